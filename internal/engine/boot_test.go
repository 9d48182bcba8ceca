package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

func TestNVRAMEntries(t *testing.T) {
	listing := "BootCurrent: 0001\nTimeout: 0 seconds\nBootOrder: 0004,0001,0000\n" +
		"Boot0000* UiApp\tFvVol(7cb8bdc9)/FvFile(462caa21)\n" +
		"Boot0001* UEFI Misc Device\tPciRoot(0x0)/Pci(0x3,0x0)\n" +
		"Boot0004* provisioner\tHD(3,GPT,…)/File(\\EFI\\BOOT\\BOOTX64.EFI)\n" +
		"Boot000A  provisioner\n" +
		"Boot0005* provisioner-old\n"
	if got := nvramEntries(listing, "provisioner"); !reflect.DeepEqual(got, []string{"0004", "000A"}) {
		t.Errorf("entries = %v", got)
	}
}

// TestNVRAM: an entry is added only for a real disk on a machine with EFI variables; an
// old entry of ours is replaced; a failure of efibootmgr does not fail the deploy.
func TestNVRAM(t *testing.T) {
	sys := t.TempDir()
	efivars := filepath.Join(sys, "firmware/efi/efivars")
	os.MkdirAll(efivars, 0o755)
	l := &partition.Layout{
		ESP:   &partition.Filesystem{Type: "vfat", UUID: "ABCD-1234"},
		Disks: []*partition.DiskLayout{{Partitions: []*partition.Partition{{Number: 1, Role: partition.RoleBIOSBoot}, {Number: 3, Role: partition.RoleESP}}}},
	}
	l.Disks[0].ID.Value = "sda"
	for _, tc := range []struct {
		name   string
		vars   bool
		file   bool
		failed bool
		want   []string
	}{
		{"no EFI variables", false, false, false, nil},
		{"image file", true, true, false, nil},
		{"real disk", true, false, false, []string{
			"efibootmgr",
			"efibootmgr --quiet --bootnum 0007 --delete-bootnum",
			`efibootmgr --quiet --create --disk /dev/sda --part 3 --label provisioner --loader '\EFI\BOOT\BOOTX64.EFI'`}},
		{"efibootmgr fails", true, false, true, []string{
			"efibootmgr",
			`efibootmgr --quiet --create --disk /dev/sda --part 3 --label provisioner --loader '\EFI\BOOT\BOOTX64.EFI'`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.RemoveAll(filepath.Join(efivars, "Boot0000-x"))
			if tc.vars {
				os.WriteFile(filepath.Join(efivars, "Boot0000-x"), nil, 0o644)
			}
			fake := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
				if tc.failed {
					return run.Result{}, &run.Error{Argv: c.Argv, ExitCode: 2, Stderr: "EFI variables are not supported on this system."}
				}
				if len(c.Argv) == 1 {
					return run.Result{Stdout: []byte("Boot0007* provisioner\tHD(...)\n")}, nil
				}
				return run.Result{}, nil
			}}
			var logs bytes.Buffer
			b := &bootStep{l: l, devs: partition.Devices{"sda": "/dev/sda"}, files: map[string]bool{"sda": tc.file},
				env: partition.Env{Run: fake, Sys: disk.Sys{SysRoot: sys}}, log: slog.New(slog.NewTextHandler(&logs, nil))}
			b.nvram(context.Background())
			var got []string
			for _, c := range fake.Calls() {
				got = append(got, run.String(c.Argv))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if tc.failed && !strings.Contains(logs.String(), "EFI variables are not supported") {
				t.Errorf("no warning logged: %s", logs.String())
			}
		})
	}
}

func TestSummaryAndDryRun(t *testing.T) {
	bi := &bootloader.BootInfo{CurrentElement: 1, MultibootPartition: "mb-uuid", Elements: []bootloader.Element{
		{GrubID: 0, OSID: "alpha", BootName: "Debian (alpha)", RootUUID: "ra", Kernel: "/boot/vmlinuz-1"},
		{GrubID: 1, OSID: "beta", BootName: "Tiny (beta)", RootUUID: "rb", Kernel: "/boot/vmlinuz-2"},
	}}
	var b bytes.Buffer
	Summary(&b, bi)
	want := "boot menu (multiboot partition mb-uuid):\n" +
		"   0  alpha            Debian (alpha)  root=ra  /boot/vmlinuz-1\n" +
		" * 1  beta             Tiny (beta)  root=rb  /boot/vmlinuz-2\n"
	if b.String() != want {
		t.Errorf("summary:\n%s\nwant:\n%s", b.String(), want)
	}
	spec := loadFile(t, "../../examples/multiboot-two-images.json")
	l, err := partition.Plan(spec, map[string]partition.Disk{"vda": {SizeBytes: 64 << 30, SectorSize: 512}}, "s")
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	bootDryRun(&b, l, BootOptions{BootInfoPath: "/tmp/boot-info.json"})
	if !strings.Contains(b.String(), "then grub (both) would be installed once, its directory and boot-info.json on the multiboot partition (") ||
		!strings.Contains(b.String(), "with 2 menu entries (default centos); boot-info.json also to /tmp/boot-info.json") {
		t.Errorf("dry run: %s", b.String())
	}
}

// fakeNode builds a machine where the multiboot filesystem (8:2, sda2) is mounted at a
// directory holding boot-info.json and / is on 8:3.
func fakeNode(t *testing.T, blkid func(argv []string) (string, int)) (partition.Env, string) {
	t.Helper()
	root := t.TempDir()
	mb := filepath.Join(root, "mnt", "multiboot")
	os.MkdirAll(mb, 0o755)
	os.WriteFile(filepath.Join(mb, bootloader.BootInfoPath), []byte(`{"elements":[]}`), 0o644)
	proc, sys, dev := filepath.Join(root, "proc"), filepath.Join(root, "sys"), filepath.Join(root, "dev")
	os.MkdirAll(filepath.Join(proc, "self"), 0o755)
	mountinfo := "22 1 8:3 / / rw,relatime shared:1 - ext4 /dev/sda3 rw\n" +
		"40 22 8:2 / " + mb + " rw,relatime shared:20 - ext4 /dev/sda2 rw\n"
	os.WriteFile(filepath.Join(proc, "self", "mountinfo"), []byte(mountinfo), 0o644)
	// sysfs: the disk's directory under devices/ holds its partitions' directories, each
	// with "partition" and its uevent; /sys/class/block/NAME links to them. The /dev
	// nodes are plain files (they are only locked).
	os.MkdirAll(filepath.Join(sys, "devices", "sda"), 0o755)
	os.WriteFile(filepath.Join(sys, "devices", "sda", "dev"), []byte("8:0\n"), 0o644)
	os.MkdirAll(filepath.Join(sys, "class", "block"), 0o755)
	os.Symlink("../../devices/sda", filepath.Join(sys, "class", "block", "sda"))
	os.MkdirAll(dev, 0o755)
	os.WriteFile(filepath.Join(dev, "sda"), nil, 0o644)
	for num, name := range map[string]string{"8:2": "sda2", "8:3": "sda3"} {
		partname := map[string]string{"sda2": "multiboot", "sda3": "tiny-a-root"}[name]
		uevent := []byte("MAJOR=8\nDEVNAME=" + name + "\nDEVTYPE=partition\nPARTNAME=" + partname + "\n")
		os.MkdirAll(filepath.Join(sys, "dev", "block", num), 0o755)
		os.WriteFile(filepath.Join(sys, "dev", "block", num, "uevent"), uevent, 0o644)
		pdir := filepath.Join(sys, "devices", "sda", name)
		os.MkdirAll(pdir, 0o755)
		os.WriteFile(filepath.Join(pdir, "dev"), []byte(num+"\n"), 0o644)
		os.WriteFile(filepath.Join(pdir, "partition"), []byte(name[3:]+"\n"), 0o644)
		os.WriteFile(filepath.Join(pdir, "uevent"), uevent, 0o644)
		os.Symlink("../../devices/sda/"+name, filepath.Join(sys, "class", "block", name))
		os.WriteFile(filepath.Join(dev, name), nil, 0o644)
	}
	fake := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		out, code := blkid(c.Argv)
		if code < 0 {
			return run.Result{}, &run.Error{Argv: c.Argv, ExitCode: -1, Err: run.ErrNotFound}
		}
		if code != 0 {
			return run.Result{}, &run.Error{Argv: c.Argv, ExitCode: code}
		}
		return run.Result{Stdout: []byte(strings.ReplaceAll(out, "DEV/", dev+"/"))}, nil
	}}
	return partition.Env{Run: fake, Sys: disk.Sys{SysRoot: sys, DevRoot: dev, ProcRoot: proc}}, mb
}

func TestOpenBootDirLive(t *testing.T) {
	ctx := context.Background()
	t.Run("mounted multiboot", func(t *testing.T) {
		// No blkid on the node: the partition is found by its GPT name in sysfs.
		env, mb := fakeNode(t, func(argv []string) (string, int) {
			return "", -1
		})
		bd, err := OpenBootDir(ctx, BootDirOptions{Env: env})
		if err != nil {
			t.Fatal(err)
		}
		if bd.Path != mb || !bd.Live || !strings.Contains(bd.Source, "mounted at "+mb) {
			t.Errorf("boot dir %+v", bd)
		}
		if err := bd.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	t.Run("two multiboot filesystems", func(t *testing.T) {
		env, _ := fakeNode(t, func(argv []string) (string, int) {
			if strings.HasSuffix(argv[len(argv)-1], "PARTLABEL=multiboot") {
				return "DEV/sdb2\n", 0
			}
			return "DEV/sda2\n", 0
		})
		_, err := OpenBootDir(ctx, BootDirOptions{Env: env})
		if !errors.Is(err, ErrEnvironment) || !strings.Contains(err.Error(), "several multiboot filesystems") || !strings.Contains(err.Error(), "--device") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("booted root", func(t *testing.T) {
		env, _ := fakeNode(t, func(argv []string) (string, int) {
			if len(argv) == 5 && argv[0] == "blkid" && argv[1] == "-p" && strings.HasSuffix(argv[4], "/sda3") {
				return "UUID=1111-root\nTYPE=ext4\n", 0
			}
			return "", 2
		})
		if got := BootedRootUUID(ctx, env); got != "1111-root" {
			t.Errorf("booted root uuid = %q", got)
		}
		// What our menu entries pass wins, without asking blkid.
		os.WriteFile(filepath.Join(env.Sys.ProcRoot, "cmdline"), []byte("BOOT_IMAGE=/boot/vmlinuz root=UUID=2222-cmdline ro console=ttyS0\n"), 0o644)
		if got := BootedRootUUID(ctx, env); got != "2222-cmdline" {
			t.Errorf("booted root uuid from the command line = %q", got)
		}
	})
}

// A prober that cannot serve the plan is refused before any disk is opened: os-prober
// alone never finds a root on an md array; an unknown prober is a usage error.
func TestDeployRefusesProberBeforeWriting(t *testing.T) {
	spec := loadFile(t, "../../examples/raid1.json")
	dir := t.TempDir()
	fake := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		t.Errorf("ran %q", c.Argv)
		return run.Result{}, nil
	}}
	for _, tc := range []struct{ prober, want string }{
		{ProberOSProber, "image server has its root on the md array /dev/md/md0, which os-prober never looks at"},
		{"grub", `--prober "grub": want auto, os-prober or builtin`},
	} {
		for _, dry := range []bool{false, true} {
			_, err := Deploy(context.Background(), spec, DeployOptions{
				PartitionOptions: PartitionOptions{
					Targets: []Target{{Name: "sda", Path: filepath.Join(dir, "sda.img")}, {Name: "sdb", Path: filepath.Join(dir, "sdb.img")}},
					Sizes:   map[string]uint64{"sda": 16 << 30, "sdb": 16 << 30}, Env: partition.Env{Run: fake}, DryRun: dry,
				},
				Boot: BootOptions{Prober: tc.prober},
			})
			if !errors.Is(err, ErrUsage) || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Error(fmt.Sprintf("prober %s, dry run %v:", tc.prober, dry), err)
			}
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("disk image files were created: %v", ents)
	}
	// auto and builtin read such a root in Go.
	l, err := partition.Plan(spec, map[string]partition.Disk{"sda": {SizeBytes: 16 << 30, SectorSize: 512}, "sdb": {SizeBytes: 16 << 30, SectorSize: 512}}, "s")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", ProberAuto, ProberBuiltin} {
		if err := checkProber(l, BootOptions{Prober: p}); err != nil {
			t.Error(fmt.Sprintf("prober %q:", p), err)
		}
	}
}

// hangingRunner stands for an os-prober blocked on a FIFO an image planted: it returns only
// when its context ends.
type hangingRunner struct{ calls atomic.Int32 }

func (h *hangingRunner) Run(ctx context.Context, cmd run.Cmd) (run.Result, error) {
	h.calls.Add(1)
	<-ctx.Done()
	return run.Result{}, ctx.Err()
}

// TestProberTimeoutFallsBack: an os-prober run that never ends is cut at ProberTimeout;
// auto then uses the kernels the built-in prober read, os-prober alone fails the deploy.
func TestProberTimeoutFallsBack(t *testing.T) {
	if !bootloader.OSProberAvailable() {
		t.Skip("os-prober is not installed")
	}
	h := &hangingRunner{}
	roots := []*partition.Image{{Name: "a", Target: "/", RootUUID: "ra"}}
	builtin := newKernelSet()
	builtin.found["a"] = bootloader.Kernel{Path: "/boot/vmlinuz-1"}
	for _, mode := range []string{ProberAuto, ProberOSProber} {
		b := &bootStep{
			l:    &partition.Layout{Disks: []*partition.DiskLayout{{ID: schema.DiskID{Type: "name", Value: "vda"}}}},
			devs: partition.Devices{"vda": "/dev/vda"}, env: partition.Env{Run: h},
			opts:   BootOptions{Prober: mode, ProberTimeout: 50 * time.Millisecond, Self: []string{"/bin/false"}},
			log:    slog.New(slog.DiscardHandler),
			byUUID: map[string]partition.FSDevice{"ra": {Dev: "/dev/vda1"}},
		}
		got, err := b.kernels(context.Background(), roots, builtin)
		if mode == ProberAuto && (err != nil || got["a"].Path != "/boot/vmlinuz-1") {
			t.Errorf("auto: %v %v, want the built-in prober's kernel", got, err)
		}
		if mode == ProberOSProber && (err == nil || !strings.Contains(err.Error(), "os-prober ran longer than 50ms")) {
			t.Errorf("os-prober: err = %v, want the timeout", err)
		}
	}
	if h.calls.Load() != 2 {
		t.Errorf("os-prober ran %d times, want 2", h.calls.Load())
	}
}
