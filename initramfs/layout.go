package initramfs

import (
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/u-root/u-root/pkg/uflag"
)

// uinitArgs are the provisioner's arguments when u-root's init starts it: its boot-flow
// subcommand.
var uinitArgs = []string{"ramdisk-boot"}

// contents are the inputs assemble puts together.
type contents struct {
	init, provisioner, busybox string   // host paths of the built programs and busybox
	applets                    []string // what busybox --list printed
	tools                      []string // host paths of the tools and data (findHostTools)
	modTree                    string   // staged lib/modules/<version> with its modules.dep
	kernelVersion              string
	load                       []string // module names for modules-load.d
}

// assemble lays out the ramdisk in t.
func assemble(t *tree, h *hostAdder, c contents) error {
	steps := []func() error{
		func() error { return baseLayout(t, c.kernelVersion) },
		func() error { return t.hostFile("init", c.init, 0o755) },
		func() error { return t.hostFile("bin/provisioner", c.provisioner, 0o755) },
		// u-root's init runs /bin/uinit with the arguments in /etc/uinit.flags: one
		// Go-quoted string a line (init panics on anything else), hence its encoder.
		func() error { return t.symlink("bin/uinit", "provisioner") },
		func() error { return t.file("etc/uinit.flags", []byte(uflag.ArgvToFile(uinitArgs)+"\n"), 0o644) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	// Host tools before busybox: a real tool wins over an applet of the same name.
	for _, p := range c.tools {
		if err := h.add(p); err != nil {
			return err
		}
	}
	if err := t.hostFile("bin/busybox", c.busybox, 0o755); err != nil {
		return err
	}
	taken := func(name string) bool { return t.has("usr/bin/"+name) || t.has("usr/sbin/"+name) }
	links, _, err := appletLinks(busyboxApplets, c.applets, requiredApplets, taken)
	if err != nil {
		return err
	}
	for _, a := range links {
		if err := t.symlink("bin/"+a, "busybox"); err != nil {
			return err
		}
	}
	return addModules(t, c.modTree, c.kernelVersion, c.load)
}

// baseLayout adds the directories, device nodes and /etc files every ramdisk has.
func baseLayout(t *tree, kernelVersion string) error {
	dirs := []struct {
		name string
		perm fs.FileMode
	}{
		{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"run", 0o755}, {"root", 0o700},
		{"tmp", 0o777 | fs.ModeSticky}, {"etc", 0o755}, {"var/lib/os-prober", 0o755},
	}
	for _, d := range dirs {
		if err := t.dir(d.name, d.perm); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for init's stdio before init runs (and mounts
	// devtmpfs), so the node must be in the archive; /dev/null for the same window.
	if err := t.charDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := t.charDev("dev/null", 0o666, 1, 3); err != nil {
		return err
	}
	osRelease := "ID=provisioner-ramdisk\nNAME=\"Provisioner ramdisk\"\n" +
		"PRETTY_NAME=\"Provisioner deploy ramdisk (Linux " + kernelVersion + ")\"\n"
	files := []struct {
		name, content string
	}{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"},
		{"etc/group", "root:x:0:\n"},
		{"etc/os-release", osRelease},
	}
	for _, f := range files {
		if err := t.file(f.name, []byte(f.content), 0o644); err != nil {
			return err
		}
	}
	// e2fsprogs and others read the mount table from /etc/mtab first.
	if err := t.symlink("etc/mtab", "../proc/self/mounts"); err != nil {
		return err
	}
	return t.file("etc/lvm/lvm.conf", []byte(lvmConf), 0o644)
}

// lvmConf makes LVM create and remove its device nodes itself. By default it leaves
// that to udev, which the ramdisk does not run: measured in QEMU, "lvm lvcreate
// --wipesignatures y" then fails with "/dev/vg0/lv0: not found: device not cleared",
// and vgchange -ay leaves /dev/<vg> empty.
const lvmConf = `# Written by mkramdisk: no udev runs in the deploy ramdisk.
activation {
	udev_sync = 0
	udev_rules = 0
}
devices {
	obtain_device_list_from_udev = 0
}
`

// addModules adds the staged module tree as /lib/modules/<version> and the list of
// modules u-root's init loads. Only the tree's modules.dep makes them loadable: never
// put loose .ko files in /lib/modules, which init loads in name order without
// dependencies.
func addModules(t *tree, modTree, version string, load []string) error {
	err := filepath.WalkDir(modTree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		rel, err := filepath.Rel(modTree, p)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		name := filepath.ToSlash(filepath.Join("lib/modules", version, rel))
		if d.IsDir() {
			return t.dir(name, 0o755)
		}
		return t.hostFile(name, p, 0o644)
	})
	if err != nil {
		return err
	}
	return t.file("lib/modules-load.d/provisioner.conf", loadConf(load), 0o644)
}
