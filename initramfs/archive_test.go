package initramfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/elfdeps"
)

func TestCanon(t *testing.T) {
	for in, want := range map[string]string{
		"/bin/busybox":                          "usr/bin/busybox",
		"bin/uinit":                             "usr/bin/uinit",
		"/lib/x86_64-linux-gnu/libc.so.6":       "usr/lib/x86_64-linux-gnu/libc.so.6",
		"/lib64/ld-linux-x86-64.so.2":           "usr/lib64/ld-linux-x86-64.so.2",
		"/sbin/mke2fs":                          "usr/sbin/mke2fs",
		"/usr/sbin/mke2fs":                      "usr/sbin/mke2fs",
		"/library/x":                            "library/x",
		"etc/../etc/passwd":                     "etc/passwd",
		"/init":                                 "init",
		"lib/modules/6.1.0-1-amd64/modules.dep": "usr/lib/modules/6.1.0-1-amd64/modules.dep",
	} {
		if got := canon(in); got != want {
			t.Errorf("canon(%q) = %q, want %q", in, got, want)
		}
	}
}

// sampleTree is a small tree with one record of each kind.
func sampleTree(t *testing.T) *tree {
	t.Helper()
	src := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(src, []byte("\x7fELF not really"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := newTree()
	for _, err := range []error{
		tr.file("etc/passwd", []byte("root:x:0:0::/root:/bin/sh\n"), 0o644),
		tr.hostFile("bin/prog", src, 0o755),
		tr.symlink("bin/sh", "busybox"),
		tr.charDev("dev/console", 0o600, 5, 1),
		tr.dir("tmp", 0o777|fs.ModeSticky),
		tr.file("usr/lib/modules/v/kernel/a.ko", []byte("ko"), 0o644),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func writeTree(t *testing.T, tr *tree) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := tr.write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestTreeWrite(t *testing.T) {
	tr := sampleTree(t)
	a, b := writeTree(t, tr), writeTree(t, sampleTree(t))
	if !bytes.Equal(a, b) {
		t.Error("two writes of the same tree differ")
	}
	var recs []Record
	contents := map[string]string{}
	err := readRecords(bytes.NewReader(a), func(r Record, c io.Reader) error {
		recs = append(recs, r)
		data, err := io.ReadAll(c)
		contents[r.Path] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range recs {
		lines = append(lines, r.String())
	}
	want := []string{
		"lrwxrwxrwx           bin -> usr/bin",
		"drwxr-xr-x           dev/",
		"crw-------       5,1 dev/console",
		"drwxr-xr-x           etc/",
		"-rw-r--r--        26 etc/passwd",
		"lrwxrwxrwx           lib -> usr/lib",
		"lrwxrwxrwx           lib64 -> usr/lib64",
		"lrwxrwxrwx           sbin -> usr/sbin",
		"drwxrwxrwt           tmp/",
		"drwxr-xr-x           usr/",
		"drwxr-xr-x           usr/bin/",
		"-rwxr-xr-x        15 usr/bin/prog",
		"lrwxrwxrwx           usr/bin/sh -> busybox",
		"drwxr-xr-x           usr/lib/",
		"drwxr-xr-x           usr/lib/modules/",
		"drwxr-xr-x           usr/lib/modules/v/",
		"drwxr-xr-x           usr/lib/modules/v/kernel/",
		"-rw-r--r--         2 usr/lib/modules/v/kernel/a.ko",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if contents["usr/bin/prog"] != "\x7fELF not really" || contents["usr/bin/sh"] != "busybox" {
		t.Errorf("contents %q", contents)
	}
	// Owners and mtimes are zero: bytes 22-37 (uid, gid) and 46-53 (mtime) of every
	// header are "0".
	if !bytes.HasPrefix(a, []byte("070701")) || string(a[22:38]) != "0000000000000000" || string(a[46:54]) != "00000000" {
		t.Errorf("first header %q", a[:110])
	}
}

func TestTreeConflicts(t *testing.T) {
	tr := newTree()
	if err := tr.file("etc/x", []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tr.file("/etc/x", []byte("a"), 0o644); err != nil {
		t.Errorf("the same file twice: %v", err)
	}
	if err := tr.file("etc/x", []byte("b"), 0o644); !errors.Is(err, errConflict) {
		t.Errorf("other content: %v", err)
	}
	if err := tr.symlink("bin/x", "a"); err != nil {
		t.Fatal(err)
	}
	if err := tr.symlink("/usr/bin/x", "b"); !errors.Is(err, errConflict) {
		t.Errorf("a second link through the merged /bin: %v", err)
	}
	if err := tr.dir("etc", 0o700); err != nil {
		t.Errorf("a directory twice: %v", err)
	}
	if err := tr.file("/", nil, 0o644); err == nil {
		t.Error("the root was accepted as a file")
	}
}

// hostAdder keeps symlinks as symlinks, resolves directory symlinks in the path, and
// makes an absolute target canonical.
func TestHostAdderSymlinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.MkdirAll(filepath.Join(real, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(real, "lib", "libfoo.so.1.2")
	if err := os.WriteFile(lib, []byte("not ELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		filepath.Join(real, "lib", "libfoo.so.1"): "libfoo.so.1.2",
		filepath.Join(real, "lib", "abs.so"):      lib,
		filepath.Join(dir, "alias"):               "real", // a directory symlink on the way
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	tr := newTree()
	h := newHostAdder(tr, &elfdeps.Resolver{Dirs: elfdeps.DefaultLibDirs})
	for _, p := range []string{filepath.Join(dir, "alias", "lib", "libfoo.so.1"), filepath.Join(real, "lib", "abs.so")} {
		if err := h.add(p); err != nil {
			t.Fatal(err)
		}
	}
	realDirPath, err := filepath.EvalSymlinks(real)
	if err != nil {
		t.Fatal(err)
	}
	libDir := canon(filepath.Join(realDirPath, "lib"))
	check := func(name string, want entry) {
		t.Helper()
		e, ok := tr.entries[path.Join(libDir, name)]
		if !ok {
			t.Errorf("%s/%s missing; tree has %q", libDir, name, slices.Sorted(maps.Keys(tr.entries)))
			return
		}
		if !e.same(&want) {
			t.Errorf("%s = %+v, want %+v", name, *e, want)
		}
	}
	check("libfoo.so.1", entry{mode: fs.ModeSymlink | 0o777, link: "libfoo.so.1.2"})
	check("abs.so", entry{mode: fs.ModeSymlink | 0o777, link: "/" + path.Join(libDir, "libfoo.so.1.2")})
	check("libfoo.so.1.2", entry{mode: 0o644, src: filepath.Join(realDirPath, "lib", "libfoo.so.1.2")})
	if tr.has(canon(filepath.Join(dir, "alias"))) {
		t.Error("the directory symlink on the way was added")
	}
}

// List reads back both compressions (and plain cpio), and a truncated archive fails.
func TestListRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, comp := range []string{compZstd, compGzip} {
		p := filepath.Join(dir, "initramfs.cpio."+extension(comp))
		n, size, err := writeArchive(sampleTree(t), p, comp)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := List(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != n || size <= 0 {
			t.Errorf("%s: %d records read, %d written, size %d", comp, len(recs), n, size)
		}
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, %v; want 0644", p, st, err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cut := filepath.Join(dir, "cut")
		if err := os.WriteFile(cut, data[:len(data)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := List(cut); err == nil {
			t.Errorf("%s: a truncated archive was read without error", comp)
		}
	}
	plain := filepath.Join(dir, "plain.cpio")
	if err := os.WriteFile(plain, writeTree(t, sampleTree(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	if recs, err := List(plain); err != nil || len(recs) != 18 {
		t.Errorf("plain cpio: %d records, %v", len(recs), err)
	}
}
