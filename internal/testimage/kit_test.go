package testimage

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/provisioner/provisioner/internal/deb/debtest"
	"github.com/provisioner/provisioner/internal/run"
)

const (
	dependsCmd  = "apt-cache depends linux-image-cloud-amd64"
	updateCmd   = "apt-get update"
	downloadCmd = "apt-get download linux-image-" + testVer + " busybox-static"
)

// fakeApt answers like apt on a machine with or without package lists and network.
type fakeApt struct {
	t        *testing.T
	cacheDir string
	missing  bool // apt-cache and apt-get are not installed
	mu       sync.Mutex
	lists    bool // package lists present (apt-cache finds a candidate)
	network  bool // update and download work
}

// aptRunner records calls in a run.Fake (which keeps no Dir) and answers from fakeApt,
// which needs Dir to know where apt-get download writes.
type aptRunner struct {
	*run.Fake
	fa *fakeApt
}

func (f *fakeApt) runner() aptRunner { return aptRunner{Fake: &run.Fake{}, fa: f} }

func (r aptRunner) Run(ctx context.Context, cmd run.Cmd) (run.Result, error) {
	if _, err := r.Fake.Run(ctx, cmd); err != nil {
		return run.Result{}, err
	}
	return r.fa.answer(cmd)
}

func (f *fakeApt) answer(c run.Cmd) (run.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(c.Env, "LC_ALL=C") {
		f.t.Errorf("%s: env %q lacks LC_ALL=C", run.String(c.Argv), c.Env)
	}
	if f.missing {
		return run.Result{}, &run.Error{Argv: c.Argv, ExitCode: -1,
			Err: &fs.PathError{Op: "fork/exec", Path: c.Argv[0], Err: fs.ErrNotExist}}
	}
	switch cmd := run.String(c.Argv); {
	case cmd == dependsCmd && f.lists:
		return run.Result{Stdout: []byte("linux-image-cloud-amd64\n  Depends: linux-image-" + testVer + "\n")}, nil
	case cmd == dependsCmd:
		return run.Result{}, run.Fail(c.Argv, 100, "E: No packages found")
	case cmd == updateCmd && f.network:
		f.lists = true
		return run.Result{}, nil
	case strings.HasPrefix(cmd, "apt-get download ") && f.network:
		if !strings.HasPrefix(c.Dir, filepath.Join(f.cacheDir, ".download-")) {
			f.t.Errorf("%s runs in %q, want a download directory in the cache", cmd, c.Dir)
		}
		for _, pkg := range c.Argv[2:] {
			var name string
			var data []byte
			switch pkg {
			case "linux-image-" + testVer:
				name, data = "linux-image-"+testVer+"_6.1.999-1_amd64.deb", debtest.Deb(f.t, "xz", kernelDebFiles()...)
			case "busybox-static":
				name, data = "busybox-static_1%3a1.35.0-4_amd64.deb", debtest.Deb(f.t, "zst", busyboxDebFiles()...)
			default:
				return run.Result{}, run.Fail(c.Argv, 100, "E: Unable to locate package "+pkg)
			}
			if err := os.WriteFile(filepath.Join(c.Dir, name), data, 0o644); err != nil {
				return run.Result{}, run.Fail(c.Argv, 100, err.Error())
			}
		}
		return run.Result{}, nil
	default:
		return run.Result{}, run.Fail(c.Argv, 100, "E: Failed to fetch: Temporary failure resolving 'deb.debian.org'")
	}
}

func setRoot(t *testing.T, root bool) {
	old := isRoot
	isRoot = func() bool { return root }
	t.Cleanup(func() { isRoot = old })
}

func TestPrepareFake(t *testing.T) {
	setRoot(t, false)
	cache := filepath.Join(t.TempDir(), "cache") // created by Prepare
	fa := &fakeApt{t: t, cacheDir: cache, lists: true, network: true}
	r := fa.runner()
	k, err := Prepare(context.Background(), r, cache)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Commands(), []string{dependsCmd, downloadCmd}; !slices.Equal(got, want) {
		t.Errorf("commands %q, want %q", got, want)
	}
	checkKit(t, k, cache)

	// Later calls use the kit and ask apt nothing, even with apt gone.
	r2 := (&fakeApt{t: t, cacheDir: cache, missing: true}).runner()
	k2, err := Prepare(context.Background(), r2, cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Commands()) != 0 {
		t.Errorf("cached Prepare ran %q", r2.Commands())
	}
	if !kitsEqual(k, k2) {
		t.Errorf("cached kit %+v, want %+v", k2, k)
	}
	// The packages stay; nothing temporary is left behind.
	ents, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{"busybox-static_1%3a1.35.0-4_amd64.deb", "kit-" + testVer, "linux-image-" + testVer + "_6.1.999-1_amd64.deb"}
	if !slices.Equal(names, want) {
		t.Errorf("cache holds %q, want %q", names, want)
	}
	ents, err = os.ReadDir(filepath.Join(cache, "kit-"+testVer))
	if err != nil {
		t.Fatal(err)
	}
	names = nil
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want = []string{"busybox", "complete", filepath.Base(k.Initrd), "modules", "vmlinuz"}
	if !slices.Equal(names, want) || !strings.HasPrefix(want[2], "initrd-") {
		t.Errorf("kit holds %q, want %q", names, want)
	}
}

// checkKit checks a kit built from kernelDebFiles and busyboxDebFiles.
func checkKit(t *testing.T, k *Kit, cache string) {
	t.Helper()
	dir := filepath.Join(cache, "kit-"+testVer)
	if k.KernelVersion != testVer {
		t.Errorf("KernelVersion %q", k.KernelVersion)
	}
	if k.Vmlinuz != filepath.Join(dir, "vmlinuz") || debtest.ReadString(t, k.Vmlinuz) != "KERNEL" {
		t.Errorf("Vmlinuz %s", k.Vmlinuz)
	}
	if k.Busybox != filepath.Join(dir, "busybox") || debtest.ReadString(t, k.Busybox) != "\x7fELF busybox" {
		t.Errorf("Busybox %s", k.Busybox)
	}
	var mods []string
	for _, m := range k.Modules {
		mods = append(mods, filepath.Base(m))
	}
	if want := []string{"virtio_ring.ko", "virtio.ko", "virtio_pci_modern_dev.ko", "virtio_pci.ko", "virtio_blk.ko"}; !slices.Equal(mods, want) {
		t.Errorf("Modules %q, want %q", mods, want)
	}
	if want := []string{filepath.Join(dir, "modules", "dm-mod.ko"), filepath.Join(dir, "modules", "raid1.ko")}; !slices.Equal(k.StorageModules, want) {
		t.Errorf("StorageModules %q, want %q", k.StorageModules, want)
	}
	var net []string
	for _, m := range []string{"failover.ko", "net_failover.ko", "virtio_net.ko"} {
		net = append(net, filepath.Join(dir, "modules", m))
	}
	if !slices.Equal(k.NetModules, net) {
		t.Errorf("NetModules %q, want %q", k.NetModules, net)
	}
	gz, err := os.ReadFile(k.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	// Stage 1 loads the network modules after the block ones.
	_, content := readCpioGz(t, gz)
	order := strings.Join(mods, "\n") + "\nfailover.ko\nnet_failover.ko\nvirtio_net.ko\n"
	if content["init"] != stage1Init || content["lib/modules/virtio_blk.ko"] != "MOD virtio_blk" ||
		content["lib/modules/virtio_net.ko"] != "MOD virtio_net" || content["lib/modules/load-order"] != order {
		t.Errorf("initrd content %q, want load order %q", content["lib/modules/load-order"], order)
	}
}

func kitsEqual(a, b *Kit) bool {
	return a.KernelVersion == b.KernelVersion && a.Vmlinuz == b.Vmlinuz && a.Busybox == b.Busybox &&
		a.Initrd == b.Initrd && slices.Equal(a.Modules, b.Modules) && slices.Equal(a.StorageModules, b.StorageModules) &&
		slices.Equal(a.NetModules, b.NetModules)
}

func TestPrepareUpdatesListsAsRoot(t *testing.T) {
	setRoot(t, true)
	cache := t.TempDir()
	r := (&fakeApt{t: t, cacheDir: cache, network: true}).runner()
	k, err := Prepare(context.Background(), r, cache)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Commands(), []string{dependsCmd, updateCmd, dependsCmd, downloadCmd}; !slices.Equal(got, want) {
		t.Errorf("commands %q, want %q", got, want)
	}
	checkKit(t, k, cache)
}

func TestPrepareUnavailable(t *testing.T) {
	type env struct{ lists, network, missing bool }
	tests := []struct {
		name    string
		root    bool
		env     env
		want    []string
		wantErr string
	}{
		{"no lists, not root", false, env{network: true}, []string{dependsCmd}, "No packages found"},
		{"no lists, offline root", true, env{}, []string{dependsCmd, updateCmd}, "Temporary failure"},
		{"no apt", true, env{missing: true}, []string{dependsCmd}, "fork/exec apt-cache"},
		{"offline, not root", false, env{lists: true}, []string{dependsCmd, downloadCmd}, "Failed to fetch"},
		{"offline root", true, env{lists: true}, []string{dependsCmd, downloadCmd, updateCmd}, "Temporary failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setRoot(t, tt.root)
			cache := t.TempDir()
			r := (&fakeApt{t: t, cacheDir: cache, lists: tt.env.lists, network: tt.env.network, missing: tt.env.missing}).runner()
			_, err := Prepare(context.Background(), r, cache)
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want ErrUnavailable with %q", err, tt.wantErr)
			}
			if got := r.Commands(); !slices.Equal(got, tt.want) {
				t.Errorf("commands %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPrepareUsesCachedDebs(t *testing.T) {
	setRoot(t, false)
	cache := t.TempDir()
	debtest.WriteTemp(t, cache, "linux-image-"+testVer+"_6.1.999-1_amd64.deb", debtest.Deb(t, "zst", kernelDebFiles()...))
	debtest.WriteTemp(t, cache, "busybox-static_1%3a1.35.0-4_amd64.deb", debtest.Deb(t, "xz", busyboxDebFiles()...))
	// A package of another ABI must not be taken for the resolved one.
	debtest.WriteTemp(t, cache, "linux-image-6.1.0-98-cloud-amd64_6.1.998-1_amd64.deb", []byte("junk"))
	r := (&fakeApt{t: t, cacheDir: cache, lists: true}).runner() // offline
	k, err := Prepare(context.Background(), r, cache)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Commands(); !slices.Equal(got, []string{dependsCmd}) {
		t.Errorf("commands %q, want only %q", got, dependsCmd)
	}
	checkKit(t, k, cache)
}

func TestPrepareCancelled(t *testing.T) {
	setRoot(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cache := t.TempDir()
	_, err := Prepare(ctx, (&fakeApt{t: t, cacheDir: cache, lists: true, network: true}).runner(), cache)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("error %v, want context.Canceled and not ErrUnavailable (a test must fail, not skip)", err)
	}
}

// Two processes (here goroutines) preparing one cache both get a complete kit.
func TestPrepareRace(t *testing.T) {
	setRoot(t, false)
	cache := t.TempDir()
	var wg sync.WaitGroup
	kits := make([]*Kit, 4)
	errs := make([]error, len(kits))
	for i := range kits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := (&fakeApt{t: t, cacheDir: cache, lists: true, network: true}).runner()
			kits[i], errs[i] = Prepare(context.Background(), r, cache)
		}()
	}
	wg.Wait()
	for i := range kits {
		if errs[i] != nil {
			t.Fatalf("Prepare %d: %v", i, errs[i])
		}
		if !kitsEqual(kits[i], kits[0]) {
			t.Errorf("kit %d = %+v, want %+v", i, kits[i], kits[0])
		}
	}
	checkKit(t, kits[0], cache)
	leftovers, _ := filepath.Glob(filepath.Join(cache, ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %q", leftovers)
	}
}

// A cached kit whose initramfs was built by other code (another /init) gets a new one.
func TestPrepareRebuildsStaleInitrd(t *testing.T) {
	setRoot(t, false)
	cache := t.TempDir()
	r := (&fakeApt{t: t, cacheDir: cache, lists: true, network: true}).runner()
	k, err := Prepare(context.Background(), r, cache)
	if err != nil {
		t.Fatal(err)
	}
	old := stage1Applets
	stage1Applets = append(slices.Clone(old), "ls")
	t.Cleanup(func() { stage1Applets = old })
	k2, err := Prepare(context.Background(), r, cache)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Initrd == k.Initrd || k2.Vmlinuz != k.Vmlinuz {
		t.Errorf("initrd %s then %s, kernel %s then %s: want a new initrd only", k.Initrd, k2.Initrd, k.Vmlinuz, k2.Vmlinuz)
	}
	gz, err := os.ReadFile(k2.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	if _, content := readCpioGz(t, gz); content["bin/ls"] != "busybox" {
		t.Error("the new initrd lacks the new applet link")
	}
	if len(r.Commands()) != 2 {
		t.Errorf("commands %q: the second Prepare must not ask apt", r.Commands())
	}
	if fi, err := os.Stat(k2.Initrd); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("initrd mode: %v %v", fi, err)
	}
}

func TestPrepareReplacesDamagedKit(t *testing.T) {
	setRoot(t, false)
	cache := t.TempDir()
	damaged := filepath.Join(cache, "kit-"+testVer)
	if err := os.MkdirAll(damaged, 0o755); err != nil {
		t.Fatal(err)
	}
	debtest.WriteTemp(t, damaged, "vmlinuz", []byte("half")) // no completion marker
	r := (&fakeApt{t: t, cacheDir: cache, lists: true, network: true}).runner()
	k, err := Prepare(context.Background(), r, cache)
	if err != nil {
		t.Fatal(err)
	}
	checkKit(t, k, cache)
}

// A kit cached before storage images existed (no storage-order), or before the images
// had network support (no net-order, no network modules), is rebuilt from the cached
// packages, without the network.
func TestPrepareRebuildsOldKit(t *testing.T) {
	for _, tt := range []struct{ name, list string }{
		{"without storage modules", "storage-order"},
		{"without network modules", "net-order"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			setRoot(t, false)
			cache := t.TempDir()
			old, err := Prepare(context.Background(), (&fakeApt{t: t, cacheDir: cache, lists: true, network: true}).runner(), cache)
			if err != nil {
				t.Fatal(err)
			}
			mods := filepath.Join(cache, "kit-"+testVer, "modules")
			if err := os.Remove(filepath.Join(mods, tt.list)); err != nil {
				t.Fatal(err)
			}
			if tt.list == "net-order" {
				for _, m := range old.NetModules {
					if err := os.Remove(m); err != nil {
						t.Fatal(err)
					}
				}
			}
			if k, err := newestKit(cache); k != nil || err != nil {
				t.Fatalf("the old kit counts as complete: %+v, %v", k, err)
			}
			r := (&fakeApt{t: t, cacheDir: cache, lists: true}).runner() // offline
			k, err := Prepare(context.Background(), r, cache)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Commands(); !slices.Equal(got, []string{dependsCmd}) {
				t.Errorf("commands %q, want only %q (no download)", got, dependsCmd)
			}
			checkKit(t, k, cache)
		})
	}
}

// makeKitDir writes a complete kit directory by hand.
func makeKitDir(t *testing.T, cache, ver string) {
	t.Helper()
	dir := filepath.Join(cache, "kit-"+ver)
	if err := os.MkdirAll(filepath.Join(dir, "modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vmlinuz", "busybox", "modules/virtio_blk.ko"} {
		debtest.WriteTemp(t, dir, f, []byte(f))
	}
	debtest.WriteTemp(t, dir, "modules/load-order", []byte("virtio_blk.ko\n"))
	debtest.WriteTemp(t, dir, "modules/storage-order", []byte(""))
	debtest.WriteTemp(t, dir, "modules/net-order", []byte(""))
	debtest.WriteTemp(t, dir, "complete", []byte(ver+"\n"))
}

func TestNewestKit(t *testing.T) {
	cache := t.TempDir()
	makeKitDir(t, cache, "6.1.0-9-cloud-amd64")
	makeKitDir(t, cache, "6.1.0-56-cloud-amd64")
	makeKitDir(t, cache, "6.1.0-60-cloud-amd64")
	os.Remove(filepath.Join(cache, "kit-6.1.0-60-cloud-amd64", "busybox")) // damaged: skipped
	k, err := newestKit(cache)
	if err != nil {
		t.Fatal(err)
	}
	if k == nil || k.KernelVersion != "6.1.0-56-cloud-amd64" {
		t.Fatalf("newest kit %+v, want 6.1.0-56", k)
	}
	if want := filepath.Join(cache, "kit-6.1.0-56-cloud-amd64", "modules", "virtio_blk.ko"); !slices.Equal(k.Modules, []string{want}) {
		t.Errorf("Modules %q", k.Modules)
	}
	if k, err := newestKit(t.TempDir()); k != nil || err != nil {
		t.Errorf("empty cache: %+v, %v", k, err)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if got := DefaultCacheDir(); got != filepath.Join("/xdg", "provisioner-test") {
		t.Errorf("with XDG_CACHE_HOME: %s", got)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got := DefaultCacheDir(); got != filepath.Join("/home/u", ".cache", "provisioner-test") {
		t.Errorf("with HOME: %s", got)
	}
	t.Setenv("HOME", "")
	if got := DefaultCacheDir(); got != filepath.Join(os.TempDir(), "provisioner-test") {
		t.Errorf("with neither: %s", got)
	}
}
