package testimage

import "github.com/provisioner/provisioner/internal/deb/debtest"

const testVer = "6.1.0-99-cloud-amd64"

// kernelDebFiles is a small linux-image package: the kernel, five of the six stage-1
// modules (virtio_pci_legacy_dev listed as built in), the three network modules, two of
// the three storage modules (md-mod built in), and things to ignore.
func kernelDebFiles() []debtest.TarFile {
	mod := "./lib/modules/" + testVer + "/"
	return []debtest.TarFile{
		{Name: "./"},
		{Name: "./boot/"},
		{Name: "./boot/vmlinuz-" + testVer, Data: "KERNEL"},
		{Name: "./boot/vmlinuz-6.1.0-98-cloud-amd64", Data: "OTHER KERNEL"},
		{Name: "./boot/config-" + testVer, Data: "CONFIG"},
		{Name: mod},
		{Name: mod + "modules.builtin", Data: "kernel/fs/ext4/ext4.ko\nkernel/drivers/virtio/virtio_pci_legacy_dev.ko\nkernel/drivers/md/md-mod.ko\n"},
		{Name: mod + "kernel/drivers/md/dm-mod.ko", Data: "MOD dm-mod"},
		{Name: mod + "kernel/drivers/md/raid1.ko", Data: "MOD raid1"},
		{Name: mod + "kernel/drivers/md/raid10.ko", Data: "MOD raid10"},
		{Name: mod + "kernel/drivers/block/virtio_blk.ko", Data: "MOD virtio_blk"},
		{Name: mod + "kernel/drivers/virtio/virtio.ko", Data: "MOD virtio"},
		{Name: mod + "kernel/drivers/virtio/virtio_ring.ko", Data: "MOD virtio_ring"},
		{Name: mod + "kernel/drivers/virtio/virtio_pci.ko", Data: "MOD virtio_pci"},
		{Name: mod + "kernel/drivers/virtio/virtio_pci_modern_dev.ko", Data: "MOD virtio_pci_modern_dev"},
		{Name: mod + "kernel/drivers/virtio/virtio_balloon.ko", Data: "MOD virtio_balloon"},
		{Name: mod + "kernel/drivers/net/virtio_net.ko", Data: "MOD virtio_net"},
		{Name: mod + "kernel/drivers/net/net_failover.ko", Data: "MOD net_failover"},
		{Name: mod + "kernel/drivers/net/dummy.ko", Data: "MOD dummy"},
		{Name: mod + "kernel/net/core/failover.ko", Data: "MOD failover"},
		{Name: "./lib/modules/6.1.0-98-cloud-amd64/kernel/drivers/block/virtio_blk.ko", Data: "WRONG"},
		{Name: "./usr/share/doc/linux-image/changelog.gz", Data: "doc"},
	}
}

func busyboxDebFiles() []debtest.TarFile {
	return []debtest.TarFile{
		{Name: "./"},
		{Name: "./bin/"},
		{Name: "./bin/busybox", Data: "\x7fELF busybox"},
		{Name: "./usr/share/doc/busybox-static/copyright", Data: "GPL"},
	}
}
