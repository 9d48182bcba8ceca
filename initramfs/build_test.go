package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/deb"
	"github.com/provisioner/provisioner/internal/elfdeps"
)

// The real build is shared by TestBuild and TestBootQEMU: one cloud-amd64 ramdisk per
// test process, in a directory TestMain removes.
var shared struct {
	once    sync.Once
	dir     string
	res     *Result
	took    time.Duration
	err     error
	skipMsg string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// skipUnlessCI skips the test, or fails it when CI=true: in CI a missing prerequisite
// is a broken machine, not a reason to pass.
func skipUnlessCI(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: failing instead of skipping)")
	}
	t.Skip(msg)
}

// goCmd is the go tool of the toolchain running the tests.
func goCmd() []string {
	if root := runtime.GOROOT(); root != "" {
		return []string{filepath.Join(root, "bin", "go")}
	}
	return []string{"go"}
}

// realOptions are the options of a real cloud-amd64 build into out.
func realOptions(out string) Options {
	return Options{Flavour: "cloud-amd64", OutDir: out, GoCmd: goCmd()}
}

// builtRamdisk builds the cloud-amd64 ramdisk once per test process, or skips.
func builtRamdisk(t *testing.T) *Result {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the deploy ramdisk: not with -short")
	}
	shared.once.Do(func() {
		if os.Geteuid() != 0 {
			shared.skipMsg = "building the ramdisk needs root (apt-get update on a fresh machine, and the tests' QEMU disks)"
			return
		}
		if shared.dir, shared.err = os.MkdirTemp("", "initramfs-test-"); shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		start := time.Now()
		shared.res, shared.err = Build(ctx, realOptions(shared.dir))
		shared.took = time.Since(start)
		if errors.Is(shared.err, deb.ErrUnavailable) || errors.Is(shared.err, ErrMissingTool) {
			shared.skipMsg, shared.err = shared.err.Error(), nil
		}
	})
	if shared.skipMsg != "" {
		skipUnlessCI(t, "%s", shared.skipMsg)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.res
}

// manifest is an archive's records by path, with a resolver for symlinks.
type manifest map[string]Record

func readManifest(t *testing.T, p string) manifest {
	t.Helper()
	recs, err := List(p)
	if err != nil {
		t.Fatal(err)
	}
	m := manifest{}
	for _, r := range recs {
		if _, dup := m[r.Path]; dup {
			t.Errorf("%s: two records for %s", p, r.Path)
		}
		m[r.Path] = r
	}
	return m
}

// resolve follows symlinks in every element of name (a ramdisk path) as the kernel
// would, and returns the record it ends at.
func (m manifest) resolve(name string) (Record, error) {
	parts := strings.Split(strings.Trim(path.Clean("/"+name), "/"), "/")
	cur := ""
	for hops := 0; len(parts) > 0; {
		next := path.Join(cur, parts[0])
		parts = parts[1:]
		r, ok := m[next]
		if !ok {
			return Record{}, fmt.Errorf("/%s: not in the archive", next)
		}
		if r.Mode&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return Record{}, fmt.Errorf("/%s: too many symlinks", name)
		}
		target := r.Link
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(next), target)
		}
		parts = append(strings.Split(strings.Trim(path.Clean("/"+target), "/"), "/"), parts...)
		cur = ""
	}
	return m[cur], nil
}

func sha(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestBuild builds the cloud-amd64 ramdisk (the real thing: apt, go build, host tools),
// checks its contents, and builds it again to show the second build is warm and gives
// the same bytes.
func TestBuild(t *testing.T) {
	res := builtRamdisk(t)
	t.Logf("first build in this process: %v; kernel %s, %s archive %d bytes (%.1f MiB), %d records",
		shared.took.Round(100*time.Millisecond), res.KernelVersion, res.Compression, res.Size, float64(res.Size)/(1<<20), res.Records)
	if res.Size >= MaxSize {
		t.Errorf("archive is %d bytes, limit %d", res.Size, MaxSize)
	}
	if res.Compression != compZstd || !strings.HasSuffix(res.Initramfs, ".cpio.zst") {
		t.Errorf("Debian 12's kernel has CONFIG_RD_ZSTD=y, got %s (%s)", res.Compression, res.Initramfs)
	}
	if b, err := os.ReadFile(res.Kernel); err != nil || len(b) < 0x206 || string(b[0x202:0x206]) != "HdrS" {
		t.Errorf("%s is not a bzImage (%v)", res.Kernel, err)
	}
	if sums, err := os.ReadFile(res.Checksums); err != nil || !strings.Contains(string(sums), fmt.Sprintf("%x  vmlinuz\n", sha(t, res.Kernel))) ||
		!strings.Contains(string(sums), fmt.Sprintf("%x  initramfs.cpio.zst\n", sha(t, res.Initramfs))) {
		t.Errorf("%s does not list both files with their digests (%v):\n%s", res.Checksums, err, sums)
	}
	m := readManifest(t, res.Initramfs)
	if len(m) != res.Records {
		t.Errorf("List read %d records, Build wrote %d", len(m), res.Records)
	}
	checkLayout(t, m, res)
	checkHostTools(t, m)
	checkModules(t, m, res)

	// Again, into another directory: warm caches, same bytes.
	out := t.TempDir()
	start := time.Now()
	res2, err := Build(context.Background(), realOptions(out))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second (warm) build: %v", time.Since(start).Round(100*time.Millisecond))
	if sha(t, res.Initramfs) != sha(t, res2.Initramfs) {
		t.Error("two builds from the same inputs gave different archives")
	}
	if sha(t, res.Kernel) != sha(t, res2.Kernel) {
		t.Error("two builds gave different kernels")
	}
}

// checkLayout checks the ramdisk's own files.
func checkLayout(t *testing.T, m manifest, res *Result) {
	t.Helper()
	exec := func(name string) {
		t.Helper()
		r, err := m.resolve(name)
		if err != nil {
			t.Error(err)
			return
		}
		if !r.Mode.IsRegular() || r.Mode.Perm()&0o111 == 0 || r.Size == 0 {
			t.Errorf("/%s resolves to %s, not an executable file", name, r)
		}
	}
	for _, p := range []string{"init", "bin/provisioner", "bin/uinit", "bin/busybox", "bin/sh", "bin/mount", "bin/grep"} {
		exec(p)
	}
	if r, err := m.resolve("bin/uinit"); err != nil || r.Path != "usr/bin/provisioner" || m["usr/bin/uinit"].Link != "provisioner" {
		t.Errorf("/bin/uinit: %s (%v), link %q; want a link to provisioner", r, err, m["usr/bin/uinit"].Link)
	}
	if r := m["dev/console"]; r.Mode&fs.ModeCharDevice == 0 || r.Major != 5 || r.Minor != 1 {
		t.Errorf("dev/console: %s", r)
	}
	if r := m["dev/null"]; r.Mode&fs.ModeCharDevice == 0 || r.Major != 1 || r.Minor != 3 {
		t.Errorf("dev/null: %s", r)
	}
	for _, d := range []string{"tmp", "run", "proc", "sys", "var/lib/os-prober", "etc"} {
		if r, err := m.resolve(d); err != nil || !r.Mode.IsDir() {
			t.Errorf("/%s: %s %v", d, r, err)
		}
	}
	contents := map[string]string{}
	wantContent := []string{"etc/uinit.flags", "etc/os-release", "etc/passwd", "etc/group", "etc/lvm/lvm.conf"}
	err := walkArchive(res.Initramfs, func(r Record, c io.Reader) error {
		if slices.Contains(wantContent, r.Path) {
			b, err := io.ReadAll(c)
			contents[r.Path] = string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := contents["etc/uinit.flags"]; got != "\"ramdisk-boot\"\n" {
		t.Errorf("etc/uinit.flags = %q", got)
	}
	if got := contents["etc/os-release"]; !strings.Contains(got, "ID=provisioner-ramdisk\n") {
		t.Errorf("etc/os-release = %q", got)
	}
	if !strings.HasPrefix(contents["etc/passwd"], "root:x:0:0:") || !strings.HasPrefix(contents["etc/group"], "root:x:0:") {
		t.Errorf("passwd %q, group %q", contents["etc/passwd"], contents["etc/group"])
	}
	if !strings.Contains(contents["etc/lvm/lvm.conf"], "udev_rules = 0") {
		t.Errorf("lvm.conf = %q", contents["etc/lvm/lvm.conf"])
	}
	// Real tools win over busybox applets of the same name.
	for _, real := range []string{"usr/sbin/blkid", "usr/bin/xz", "usr/sbin/mkswap"} {
		if r := m[real]; !r.Mode.IsRegular() {
			t.Errorf("%s: %s, want the real tool", real, r)
		}
	}
	if _, ok := m["usr/bin/mkswap"]; ok {
		t.Error("busybox mkswap linked next to the real one")
	}
}

// checkHostTools checks that every tool of the list, the data it reads, and every
// library each ELF file needs are in the archive and resolve to regular files.
func checkHostTools(t *testing.T, m manifest) {
	t.Helper()
	paths, err := findHostTools(hostTools, hostPaths, toolDirs)
	if err != nil {
		t.Fatal(err)
	}
	libs := &elfdeps.Resolver{Dirs: elfdeps.DefaultLibDirs}
	checked := 0
	for _, p := range paths {
		err := filepath.WalkDir(p, func(hp string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			r, err := m.resolve(canon(hp))
			if err != nil || !r.Mode.IsRegular() {
				t.Errorf("host %s: %s %v", hp, r, err)
				return nil
			}
			needs, err := libs.Needs(hp)
			if err != nil {
				return err
			}
			for _, l := range needs {
				checked++
				if r, err := m.resolve(canon(l)); err != nil || !r.Mode.IsRegular() {
					t.Errorf("%s needs %s: %s %v", hp, l, r, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 50 {
		t.Errorf("only %d library uses checked: the resolver found too little", checked)
	}
	// The loader the tools name in PT_INTERP.
	if r, err := m.resolve("lib64/ld-linux-x86-64.so.2"); err != nil || !r.Mode.IsRegular() {
		t.Errorf("the loader: %s %v", r, err)
	}
}

// checkModules checks the module tree: modules.dep listing exactly files that are
// there, modules-load.d naming modules it lists, and no loose .ko in /lib/modules.
func checkModules(t *testing.T, m manifest, res *Result) {
	t.Helper()
	dir := "usr/lib/modules/" + res.KernelVersion
	for _, f := range []string{"modules.dep", "modules.dep.bin", "modules.builtin", "modules.order", "modules.alias"} {
		if r, ok := m[dir+"/"+f]; !ok || !r.Mode.IsRegular() {
			t.Errorf("%s/%s missing", dir, f)
		}
	}
	for p := range m {
		if path.Dir(p) == "usr/lib/modules" && strings.HasSuffix(p, ".ko") {
			t.Errorf("loose module %s: u-root's init would load it without its dependencies", p)
		}
	}
	var dep, conf string
	err := walkArchive(res.Initramfs, func(r Record, c io.Reader) error {
		var err error
		var b []byte
		switch r.Path {
		case dir + "/modules.dep":
			b, err = io.ReadAll(c)
			dep = string(b)
		case "usr/lib/modules-load.d/provisioner.conf":
			b, err = io.ReadAll(c)
			conf = string(b)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ix, err := parseModIndex(strings.NewReader(dep), strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	for file, deps := range ix.deps {
		for _, f := range append([]string{file}, deps...) {
			if r, ok := m[dir+"/"+f]; !ok || !r.Mode.IsRegular() {
				t.Errorf("modules.dep names %s, which is not in the archive", f)
			}
		}
	}
	var load []string
	for _, l := range strings.Split(conf, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			load = append(load, l)
			if ix.path[l] == "" {
				t.Errorf("provisioner.conf names %s, which modules.dep lacks", l)
			}
		}
	}
	for _, want := range []string{"virtio_pci", "virtio_blk", "virtio_net", "xfs", "vfat", "dm_mod", "raid1", "fuse"} {
		if !slices.Contains(load, want) {
			t.Errorf("provisioner.conf lacks %s: %q", want, load)
		}
	}
	if !bytes.Contains([]byte(conf), []byte("crc32c_intel\n")) || slices.Index(load, "crc32c_intel") > slices.Index(load, "xfs") {
		t.Errorf("crc32c_intel must load before xfs: %q", load)
	}
}
