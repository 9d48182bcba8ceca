package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
)

// planned plans the example spec at path on 64 GiB disks (vda, sda, sdb) and returns a bootStep over
// it, its devices resolved as the deploy resolves them.
func planned(t *testing.T, path string) *bootStep {
	t.Helper()
	spec := loadFile(t, path)
	disk := partition.Disk{SizeBytes: 64 << 30, SectorSize: 512}
	l, err := partition.Plan(spec, map[string]partition.Disk{"vda": disk, "sda": disk, "sdb": disk}, "s")
	if err != nil {
		t.Fatal(err)
	}
	b := &bootStep{l: l, devs: partition.Devices{"vda": "/dev/vda", "sda": "/dev/sda", "sdb": "/dev/sdb"}, byUUID: map[string]partition.FSDevice{}, log: slog.New(slog.DiscardHandler)}
	for _, fd := range partition.FilesystemDevices(l, b.devs) {
		b.byUUID[fd.FS.UUID] = fd
	}
	return b
}

// devOf is the device of the volume mounted at mount by image name in b's plan.
func devOf(t *testing.T, b *bootStep, image, mount string) string {
	t.Helper()
	for _, im := range b.l.Images {
		if im.Name == image {
			if m := im.MountAt(mount); m != nil {
				return b.byUUID[m.FSUUID].Dev
			}
		}
	}
	t.Fatalf("image %s mounts nothing at %s", image, mount)
	return ""
}

// TestProberVolumes: os-prober is shown the roots and the /boot volumes, never the
// multiboot partition, the ESP, BIOS boot, swap, the shared or utility volumes.
func TestProberVolumes(t *testing.T) {
	for _, tc := range []struct {
		spec        string
		roots, boot [][2]string // image, mount
		groups      [][]string
	}{
		{"../../examples/multiboot-two-images.json", [][2]string{{"centos", "/"}, {"ubuntu", "/"}}, nil, [][]string{{"centos"}, {"ubuntu"}}},
		{"../../examples/utility-image.json", [][2]string{{"centos", "/"}, {"ubuntu", "/"}}, nil, [][]string{{"centos"}, {"ubuntu"}}},
		// Both roots are volumes of the vg "os": one run, which lvs shows them both to.
		{"../../examples/lvm.json", [][2]string{{"alpha", "/"}, {"beta", "/"}}, [][2]string{{"alpha", "/boot"}}, [][]string{{"alpha", "beta"}}},
		// os-prober never looks at an md array: no run at all.
		{"../../examples/raid1.json", [][2]string{{"server", "/"}}, nil, nil},
	} {
		t.Run(filepath.Base(tc.spec), func(t *testing.T) {
			b := planned(t, tc.spec)
			roots := rootImages(b.l)
			var want bootloader.ProberVolumes
			for _, r := range tc.roots {
				want.Roots = append(want.Roots, devOf(t, b, r[0], r[1]))
			}
			for _, r := range tc.boot {
				want.Boot = append(want.Boot, devOf(t, b, r[0], r[1]))
			}
			got := b.proberVolumes(roots)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("volumes %+v, want %+v", got, want)
			}
			// Nothing else the plan formats is shown.
			shown := map[string]bool{}
			for _, d := range append(got.Roots, got.Boot...) {
				shown[d] = true
			}
			hidden := 0
			for _, fd := range partition.FilesystemDevices(b.l, b.devs) {
				if !shown[fd.Dev] {
					hidden++
				}
			}
			if hidden == 0 {
				t.Errorf("the plan has no volume besides the roots: the case proves nothing")
			}
			var groups [][]string
			for _, g := range probeGroups(b.l, roots) {
				var names []string
				for _, im := range g {
					names = append(names, im.Name)
				}
				groups = append(groups, names)
			}
			if !reflect.DeepEqual(groups, tc.groups) {
				t.Errorf("probe groups %v, want %v", groups, tc.groups)
			}
		})
	}
}

// funcRunner runs f for every command.
type funcRunner func(ctx context.Context, cmd run.Cmd) (run.Result, error)

func (f funcRunner) Run(ctx context.Context, cmd run.Cmd) (run.Result, error) { return f(ctx, cmd) }

// fakeGrubLib is a grub library with one module per platform and boot.img, enough for
// InstallBIOS and InstallEFI with a runner that runs nothing.
func fakeGrubLib(t *testing.T) string {
	t.Helper()
	lib := t.TempDir()
	for _, f := range []string{"x86_64-efi/normal.mod", "i386-pc/normal.mod", "i386-pc/boot.img"} {
		if err := os.MkdirAll(filepath.Join(lib, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lib, f), []byte("mod"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return lib
}

// writeImage creates the file a grub-mkimage call names with -o.
func writeImage(argv []string) error {
	for i, a := range argv[:len(argv)-1] {
		if a == "-o" {
			return os.WriteFile(argv[i+1], []byte("image"), 0o644)
		}
	}
	return errors.New("grub-mkimage without -o")
}

// platformOf returns the platform a grub-mkimage call builds for ("" for other programs).
func platformOf(argv []string) string {
	if argv[0] != "grub-mkimage" {
		return ""
	}
	for i, a := range argv[:len(argv)-1] {
		if a == "-O" {
			return argv[i+1]
		}
	}
	return ""
}

// installStep is a bootStep for the "both" boot mode plan of multiboot-two-images.json,
// with r as its runner and loc a fresh boot directory.
func installStep(t *testing.T, r run.Runner) (*bootStep, bootloader.Location) {
	t.Helper()
	b := planned(t, "../../examples/multiboot-two-images.json")
	if b.l.BootMode != "both" || b.l.ESP == nil {
		t.Fatalf("the example plans boot mode %s, ESP %v: want both, with an ESP", b.l.BootMode, b.l.ESP)
	}
	b.env.Run, b.opts.GrubLib, b.tmpDir = r, fakeGrubLib(t), t.TempDir()
	loc := bootloader.Multiboot(t.TempDir(), b.l.Multiboot.UUID)
	return b, loc
}

// TestInstallsRunSideBySide: the BIOS install and the UEFI install wait for each other
// to have started; run one after the other, the first would time out.
func TestInstallsRunSideBySide(t *testing.T) {
	bios, uefi := make(chan struct{}), make(chan struct{})
	var once sync.Map
	r := funcRunner(func(ctx context.Context, cmd run.Cmd) (run.Result, error) {
		mine, other := bios, uefi
		switch platformOf(cmd.Argv) {
		case "i386-pc":
		case "x86_64-efi":
			mine, other = uefi, bios
		default:
			return run.Result{}, nil
		}
		if _, done := once.LoadOrStore(platformOf(cmd.Argv), true); !done {
			close(mine)
		}
		select {
		case <-other:
			return run.Result{}, writeImage(cmd.Argv)
		case <-time.After(10 * time.Second):
			return run.Result{}, fmt.Errorf("%s: the other install never started alongside", cmd.Argv[0])
		}
	})
	b, loc := installStep(t, r)
	g, gctx := errgroup.WithContext(context.Background())
	b.installBootCode(gctx, g, loc)
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if b.took.GrubBIOS <= 0 || b.took.GrubUEFI <= 0 || b.took.GrubInstall != max(b.took.GrubBIOS, b.took.GrubUEFI) {
		t.Errorf("durations: %+v", b.took)
	}
	if _, err := os.Stat(filepath.Join(loc.GrubPath(), "x86_64-efi", "normal.mod")); err != nil {
		t.Errorf("UEFI modules: %v", err)
	}
}

// TestInstallFailureCancels: a failing BIOS install cancels the UEFI install running
// beside it, and its error is the one returned.
func TestInstallFailureCancels(t *testing.T) {
	boom := errors.New("grub-mkimage: boom")
	cancelled := make(chan struct{})
	r := funcRunner(func(ctx context.Context, cmd run.Cmd) (run.Result, error) {
		switch platformOf(cmd.Argv) {
		case "i386-pc":
			return run.Result{}, boom
		case "x86_64-efi":
			select {
			case <-ctx.Done():
				close(cancelled)
				return run.Result{}, ctx.Err()
			case <-time.After(10 * time.Second):
				return run.Result{}, errors.New("not cancelled")
			}
		}
		return run.Result{}, nil
	})
	b, loc := installStep(t, r)
	g, gctx := errgroup.WithContext(context.Background())
	b.installBootCode(gctx, g, loc)
	err := g.Wait()
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want the BIOS install's", err)
	}
	select {
	case <-cancelled:
	default:
		t.Error("the UEFI install was not cancelled")
	}
}

// TestDiscoveryCancelledBesideInstalls: kernel discovery cancelled by a failing install
// returns the install's error, not a fallback to the built-in prober.
func TestDiscoveryCancelledBesideInstalls(t *testing.T) {
	if !bootloader.OSProberAvailable() {
		t.Skip("os-prober is not installed")
	}
	b := planned(t, "../../examples/multiboot-two-images.json")
	b.env.Run = &hangingRunner{}
	b.opts = BootOptions{Prober: ProberAuto, Self: []string{"/bin/false"}}
	builtin := newKernelSet()
	for _, im := range rootImages(b.l) {
		builtin.found[im.Name] = bootloader.Kernel{Path: "/boot/vmlinuz-1"}
	}
	boom := errors.New("grub-install: boom")
	g, gctx := errgroup.WithContext(context.Background())
	var got map[string]bootloader.Kernel
	g.Go(func() error {
		var err error
		got, err = b.kernels(gctx, rootImages(b.l), builtin)
		return err
	})
	g.Go(func() error { time.Sleep(20 * time.Millisecond); return boom })
	if err := g.Wait(); !errors.Is(err, boom) || got != nil {
		t.Errorf("err = %v, kernels %v: want the install's error and none", err, got)
	}
}

// TestPhaseClock: phases run from their first event to the next phase's; repeated
// events of a phase (image progress) do not restart it; per-image and bootloader
// durations are carried as given.
func TestPhaseClock(t *testing.T) {
	var seen []string
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	now := t0
	c := newPhaseClock(func() time.Time { return now })
	sink := c.wrap(func(e Event) { seen = append(seen, e.Phase+":"+e.Message) })
	at := func(d time.Duration, e Event) {
		now = t0.Add(d)
		sink(e)
	}
	at(10*time.Millisecond, Event{Phase: PhasePlan, Message: "plan"})
	at(300*time.Millisecond, Event{Phase: PhasePartition, Message: "partition"})
	at(1300*time.Millisecond, Event{Phase: PhaseImages, Message: "images"})
	at(1400*time.Millisecond, Event{Phase: PhaseImages, Image: "a", Done: 1})
	at(4300*time.Millisecond, Event{Message: "a line within the phase"})
	at(4300*time.Millisecond, Event{Phase: PhaseBootloader, Message: "boot"})
	c.image("a", 2500*time.Millisecond)
	c.image("b", 2900*time.Millisecond)
	boot := &BootDurations{KernelDiscovery: 2 * time.Second, GrubInstall: 3 * time.Second, GrubBIOS: 3 * time.Second, GrubUEFI: time.Second, Commit: 400 * time.Millisecond, Concurrent: true}
	now = t0.Add(8 * time.Second)
	d := c.durations(boot)
	want := &Durations{TotalMS: 8000, PlanMS: 300, PartitionMS: 1000, ImagesMS: 3000, BootloaderMS: 3700,
		PerImageMS: map[string]int64{"a": 2500, "b": 2900},
		Bootloader: &BootloaderMS{KernelDiscoveryMS: 2000, GrubInstallMS: 3000, GrubBIOSMS: 3000, GrubUEFIMS: 1000, CommitMS: 400, Concurrent: true}}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("durations:\n got %+v %+v\nwant %+v %+v", d, d.Bootloader, want, want.Bootloader)
	}
	if len(seen) != 6 {
		t.Errorf("events passed on: %q", seen)
	}
	text := strings.Join(d.Lines(), "\n")
	for _, s := range []string{"plan        0.3 s", "  a         2.5 s", "bootloader  3.7 s",
		"kernel discovery 2.0 s (alongside the installs)", "grub install 3.0 s (BIOS 3.0 s, UEFI 1.0 s, side by side)", "total       8.0 s"} {
		if !strings.Contains(text, s) {
			t.Errorf("lines lack %q:\n%s", s, text)
		}
	}
}
