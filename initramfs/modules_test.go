package initramfs

import (
	"slices"
	"strings"
	"testing"
)

// A modules.dep in depmod's format: each module with its dependencies, transitively.
const sampleDep = `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/fs/fat/fat.ko:
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
`

const sampleBuiltin = "kernel/fs/ext4/ext4.ko\nkernel/drivers/nvme/host/nvme.ko\nkernel/crypto/crc32c_generic.ko\n"

func sampleIndex(t *testing.T) *modIndex {
	t.Helper()
	ix, err := parseModIndex(strings.NewReader(sampleDep), strings.NewReader(sampleBuiltin))
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestModName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/fs/fat/vfat.ko":                  "vfat",
		"kernel/arch/x86/crypto/crc32c-intel.ko": "crc32c_intel",
		"kernel/drivers/md/dm-mod.ko.xz":         "dm_mod",
		"crc32c-intel":                           "crc32c_intel",
		"md_mod":                                 "md_mod",
	} {
		if got := modName(in); got != want {
			t.Errorf("modName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClosure(t *testing.T) {
	ix := sampleIndex(t)
	got, err := ix.closure([]string{"virtio_blk", "virtio_pci", "xfs"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/drivers/block/virtio_blk.ko",
		"kernel/drivers/virtio/virtio.ko",
		"kernel/drivers/virtio/virtio_pci.ko",
		"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
		"kernel/drivers/virtio/virtio_ring.ko",
		"kernel/fs/xfs/xfs.ko",
		"kernel/lib/libcrc32c.ko",
	}
	if !slices.Equal(got, want) {
		t.Errorf("closure = %q\nwant %q", got, want)
	}
	if _, err := ix.closure([]string{"nope"}); err == nil {
		t.Error("an unknown module was accepted")
	}
	// A dependency the index does not list is an error, not a module silently missing.
	broken, err := parseModIndex(strings.NewReader("kernel/a.ko: kernel/b.ko\n"), strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broken.closure([]string{"a"}); err == nil || !strings.Contains(err.Error(), "kernel/b.ko") {
		t.Errorf("dangling dependency: %v", err)
	}
}

// Only direct dependencies listed (a hand-written index): the closure still follows them.
func TestClosureTransitive(t *testing.T) {
	ix, err := parseModIndex(strings.NewReader("a.ko: b.ko\nb.ko: c.ko\nc.ko:\n"), strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ix.closure([]string{"a"})
	if err != nil || !slices.Equal(got, []string{"a.ko", "b.ko", "c.ko"}) {
		t.Errorf("closure = %q, %v", got, err)
	}
}

func TestSelectModules(t *testing.T) {
	ix := sampleIndex(t)
	wanted := []wantedModule{
		{"crc32c_intel", helper}, {"crc32c_generic", helper}, {"virtio_pci", required}, {"virtio_blk", required},
		{"nvme", required}, {"ext4", required}, {"xfs", required}, {"vfat", required},
		{"e1000", hardware}, {"igb", hardware}, {"mlx5_core", helper},
	}
	// A flavour without hardware: igb is optional and absent.
	c, err := selectModules(ix, wanted, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"crc32c_intel", "virtio_pci", "virtio_blk", "xfs", "vfat", "e1000"}; !slices.Equal(c.load, want) {
		t.Errorf("load = %q, want %q", c.load, want)
	}
	if want := []string{"crc32c_generic", "nvme", "ext4"}; !slices.Equal(c.builtin, want) {
		t.Errorf("builtin = %q, want %q", c.builtin, want)
	}
	if want := []string{"igb", "mlx5_core"}; !slices.Equal(c.absent, want) {
		t.Errorf("absent = %q, want %q", c.absent, want)
	}
	if !slices.Contains(c.files, "kernel/fs/fat/fat.ko") || !slices.Contains(c.files, "kernel/lib/libcrc32c.ko") {
		t.Errorf("files %q lack the dependencies", c.files)
	}
	// A hardware flavour needs igb.
	if _, err := selectModules(ix, wanted, true); err == nil || !strings.Contains(err.Error(), "igb") {
		t.Errorf("hardware flavour without igb: %v", err)
	}
	// A required module that is neither a file nor built in.
	_, err = selectModules(ix, append(wanted[:len(wanted):len(wanted)], wantedModule{"dm_mod", required}), false)
	if err == nil || !strings.Contains(err.Error(), "dm_mod") {
		t.Errorf("missing dm_mod: %v", err)
	}
}

func TestLoadConf(t *testing.T) {
	got := string(loadConf([]string{"virtio_pci", "xfs"}))
	if !strings.HasPrefix(got, "#") || !strings.HasSuffix(got, "\nvirtio_pci\nxfs\n") {
		t.Errorf("loadConf = %q", got)
	}
}

// The wanted list itself: helpers before the modules that need them, no duplicates.
func TestWantedModules(t *testing.T) {
	seen := map[string]bool{}
	for i, w := range wantedModules {
		if seen[w.name] {
			t.Errorf("%s listed twice", w.name)
		}
		seen[w.name] = true
		if w.class == helper && i > 1 {
			t.Errorf("helper %s at position %d: helpers go first", w.name, i)
		}
	}
}
