// Package initramfs builds the deploy ramdisk on the build host: a Debian 12 kernel and
// a newc cpio archive that boots into the provisioner. Runtime code never imports it.
//
// The archive holds
//
//   - u-root's init as /init (plain go build). It mounts /proc, /sys and /dev, loads the
//     modules named in /lib/modules-load.d/provisioner.conf with their dependencies,
//     then runs /bin/uinit (a link to /bin/provisioner) with the arguments in
//     /etc/uinit.flags ("ramdisk-boot"), and a shell when that exits;
//   - the provisioner, built with go build -trimpath, CGO_ENABLED=0 and the tag
//     nofleetlockserver (no FleetLock server, no etcd client: a deploy copies it into
//     the image as the node tools);
//   - Debian's static busybox with links for the applets shell scripts and a person at
//     the console need (never over a real tool of the same name);
//   - the external tools the provisioner runs (mkfs.*, lvm, mdadm, grub, os-prober,
//     mtools, efibootmgr, ...) copied from the build host with their loader and every
//     shared library they need, found by reading their ELF headers, plus the data they
//     read (grub's platform files, os-prober's scripts, one iconv module for mtools);
//   - /lib/modules/<version>: the modules the ramdisk needs and their dependencies, with
//     a modules.dep made by depmod for exactly that set.
//
// The layout is merged-/usr, like the build host: bin, sbin, lib and lib64 are links
// into usr/, so /bin/provisioner is stored as usr/bin/provisioner.
//
// The kernel package is fetched with apt-get download (never installed), unpacked in Go
// into a per-user cache once per version, and indexed there with depmod. Builds are
// reproducible: the same inputs give the same archive bytes.
package initramfs
