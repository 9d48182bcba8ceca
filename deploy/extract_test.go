package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// member is one archive entry for buildTar.
type member struct {
	tar.Header
	body []byte
}

func reg(name string, body string) member {
	return member{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, body: []byte(body)}
}
func dirm(name string) member {
	return member{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}
func symlink(name, target string) member {
	return member{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}
func hardlink(name, target string) member {
	return member{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}
func fifo(name string) member {
	return member{Header: tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: 0o600}}
}
func chardev(name string, major, minor int64) member {
	return member{Header: tar.Header{Typeflag: tar.TypeChar, Name: name, Mode: 0o666, Devmajor: major, Devminor: minor}}
}

// buildTar writes the members as a PAX archive, as archive/tar makes it (so the names
// are exactly what the test says, "../x" included).
func buildTar(t testing.TB, members ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		h := m.Header
		h.Size = int64(len(m.body))
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if _, err := tw.Write(m.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox is a temporary directory holding the extraction root, an empty canary
// directory beside it and a secret file that no entry may touch.
type sandbox struct {
	dir, root, outside, secret string
}

const secretText = "secret, do not touch\n"

func newSandbox(t testing.TB) sandbox {
	t.Helper()
	return sandboxIn(t, t.TempDir())
}

// sandboxIn makes the sandbox in dir, an empty directory.
func sandboxIn(t testing.TB, dir string) sandbox {
	t.Helper()
	s := sandbox{dir: dir, root: filepath.Join(dir, "root"), outside: filepath.Join(dir, "outside"), secret: filepath.Join(dir, "secret")}
	for _, d := range []string{s.root, s.outside, s.secret} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.secret, "file"), []byte(secretText), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// check fails the test when anything exists outside root other than the empty canary
// and the untouched secret file (same content, a single link, the same mode).
func (s sandbox) check(t testing.TB) {
	t.Helper()
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch p {
		case s.dir, s.outside, s.secret:
			return nil
		case s.root:
			return filepath.SkipDir
		case filepath.Join(s.secret, "file"):
			var st unix.Stat_t
			data, rerr := os.ReadFile(p)
			if unix.Lstat(p, &st) != nil || rerr != nil || string(data) != secretText || st.Nlink != 1 || st.Mode != unix.S_IFREG|0o644 {
				t.Errorf("the secret file outside the root was changed (nlink %d, mode %o, %q)", st.Nlink, st.Mode, data)
			}
			return nil
		}
		t.Errorf("%s was created outside the root", p)
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", s.dir, err)
	}
}

func extract(t testing.TB, root string, archive []byte, opts ExtractOptions) (ExtractStats, error) {
	t.Helper()
	return ExtractTar(context.Background(), bytes.NewReader(archive), root, opts)
}

func TestExtractHostile(t *testing.T) {
	type hostileCase struct {
		name    string
		members func(s sandbox) []member
		entry   string // the entry the error must name
	}
	outsideAbs := func(s sandbox) string { return s.outside }
	cases := []hostileCase{
		{"dotdot", func(sandbox) []member { return []member{reg("../x", "owned")} }, "../x"},
		{"dotdot deep", func(sandbox) []member { return []member{dirm("a/"), reg("a/../../x", "owned")} }, "a/../../x"},
		{"dotdot inside", func(sandbox) []member { return []member{dirm("a/"), reg("a/../x", "harmless but refused")} }, "a/../x"},
		{"dot slash dotdot", func(sandbox) []member { return []member{reg("./../x", "owned")} }, "./../x"},
		{"absolute dotdot", func(sandbox) []member { return []member{reg("/../x", "owned")} }, "/../x"},
		{"absolute symlink then file under it", func(s sandbox) []member {
			return []member{symlink("evil", outsideAbs(s)), reg("evil/owned", "owned")}
		}, "evil/owned"},
		{"absolute symlink then dir under it", func(s sandbox) []member {
			return []member{symlink("evil", outsideAbs(s)), dirm("evil/sub/")}
		}, "evil/sub/"},
		{"relative symlink climbing out", func(sandbox) []member {
			return []member{symlink("rel", "../../.."), reg("rel/owned", "owned")}
		}, "rel/owned"},
		{"relative symlink to the sibling", func(sandbox) []member {
			return []member{symlink("up", "../outside"), reg("up/owned", "owned")}
		}, "up/owned"},
		{"nested relative symlink climbing out", func(sandbox) []member {
			return []member{dirm("a/b/"), symlink("a/b/up", "../../../outside"), reg("a/b/up/owned", "owned")}
		}, "a/b/up/owned"},
		{"symlink chain climbing out", func(sandbox) []member {
			return []member{symlink("one", "two/.."), symlink("two", "."), symlink("three", "one/../outside"), fifo("three/owned")}
		}, "three/owned"},
		{"hardlink dotdot", func(sandbox) []member { return []member{hardlink("hl", "../../etc/passwd")} }, "hl"},
		{"hardlink to the sibling secret", func(sandbox) []member { return []member{hardlink("hl", "../secret/file")} }, "hl"},
		{"hardlink absolute", func(sandbox) []member { return []member{hardlink("hl", "/etc/hostname")} }, "hl"},
		{"hardlink absolute to the secret", func(s sandbox) []member {
			return []member{hardlink("hl", filepath.Join(s.secret, "file"))}
		}, "hl"},
		{"hardlink through an absolute symlink", func(s sandbox) []member {
			return []member{symlink("evil", s.secret), hardlink("hl", "evil/file")}
		}, "hl"},
		{"hardlink through a climbing symlink", func(sandbox) []member {
			return []member{symlink("rel", "../secret"), hardlink("hl", "rel/file")}
		}, "hl"},
		{"hardlink to a directory", func(sandbox) []member { return []member{dirm("d/"), hardlink("hl", "d")} }, "hl"},
		{"hardlink to the root", func(sandbox) []member { return []member{hardlink("hl", "./")} }, "hl"},
		{"char device dotdot", func(sandbox) []member { return []member{chardev("../null", 1, 3)} }, "../null"},
		{"fifo dotdot", func(sandbox) []member { return []member{dirm("a/"), fifo("a/../../f")} }, "a/../../f"},
		{"symlink dotdot name", func(sandbox) []member { return []member{symlink("../ln", "/etc")} }, "../ln"},
		{"root replaced by a symlink", func(sandbox) []member { return []member{symlink("./", "/")} }, "./"},
		{"root replaced by a file", func(sandbox) []member { return []member{reg(".", "x")} }, "."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSandbox(t)
			_, err := extract(t, s.root, buildTar(t, c.members(s)...), ExtractOptions{})
			var he *HostileEntryError
			if !errors.Is(err, ErrHostile) || !errors.As(err, &he) {
				t.Fatalf("ExtractTar error = %v, want a *HostileEntryError", err)
			}
			t.Log(err)
			if he.Entry != c.entry || !strings.Contains(err.Error(), c.entry) {
				t.Errorf("error names entry %q (%v), want %q", he.Entry, err, c.entry)
			}
			s.check(t)
		})
	}
}

// TestExtractSymlinkToSlash: with chroot semantics an entry under a symlink to "/"
// lands inside the root; the host's file must not change.
func TestExtractSymlinkToSlash(t *testing.T) {
	s := newSandbox(t)
	hostBefore, _ := os.ReadFile("/etc/passwd")
	_, err := extract(t, s.root, buildTar(t, symlink("link", "/"), reg("link/etc/passwd", "owned\n")), ExtractOptions{})
	if err != nil && !errors.Is(err, ErrHostile) {
		t.Fatalf("ExtractTar: %v", err)
	}
	if err == nil {
		if data, rerr := os.ReadFile(filepath.Join(s.root, "etc/passwd")); rerr != nil || string(data) != "owned\n" {
			t.Errorf("root/etc/passwd = %q, %v; want the entry's data inside the root", data, rerr)
		}
	}
	if hostAfter, _ := os.ReadFile("/etc/passwd"); !bytes.Equal(hostBefore, hostAfter) {
		t.Fatalf("the host's /etc/passwd changed")
	}
	s.check(t)
}

// TestExtractReplacesSymlink: a regular file (or any entry) whose name is an existing
// symlink replaces the symlink and never writes through it.
func TestExtractReplacesSymlink(t *testing.T) {
	for _, kind := range []string{"file", "fifo", "dir", "symlink", "hardlink"} {
		t.Run(kind, func(t *testing.T) {
			s := newSandbox(t)
			var m member
			switch kind {
			case "file":
				m = reg("x", "mine")
			case "fifo":
				m = fifo("x")
			case "dir":
				m = dirm("x/")
			case "symlink":
				m = symlink("x", "elsewhere")
			case "hardlink":
				m = hardlink("x", "other")
			}
			members := []member{
				reg("other", "mine"),
				symlink("x", filepath.Join(s.secret, "file")), // would overwrite the secret
				symlink("y", filepath.Join(s.outside, "new")), // would create in the canary
				m,
			}
			if kind == "file" {
				members = append(members, reg("y", "mine"))
			}
			if _, err := extract(t, s.root, buildTar(t, members...), ExtractOptions{}); err != nil {
				t.Fatalf("ExtractTar: %v", err)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(s.root, "x"), &st); err != nil {
				t.Fatal(err)
			}
			want := map[string]uint32{"file": unix.S_IFREG, "fifo": unix.S_IFIFO, "dir": unix.S_IFDIR, "symlink": unix.S_IFLNK, "hardlink": unix.S_IFREG}[kind]
			if st.Mode&unix.S_IFMT != want {
				t.Errorf("x has mode %o, want type %o", st.Mode, want)
			}
			s.check(t)
		})
	}
}

// TestExtractReplacesExisting: a kept volume may hold content; entries replace it.
func TestExtractReplacesExisting(t *testing.T) {
	s := newSandbox(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(s.root, "etc/emptydir"), 0o755))
	must(os.WriteFile(filepath.Join(s.root, "etc/motd"), []byte("old"), 0o600))
	must(os.Link(filepath.Join(s.root, "etc/motd"), filepath.Join(s.root, "etc/motd.keep")))
	must(os.MkdirAll(filepath.Join(s.root, "keep/dir"), 0o700))
	must(os.WriteFile(filepath.Join(s.root, "keep/dir/kept"), []byte("kept"), 0o600))

	_, err := extract(t, s.root, buildTar(t,
		reg("etc/motd", "new"), // replaces, does not write into the other link
		reg("etc/emptydir", "now a file"),
		dirm("keep/"), // an existing directory is kept, with the new mode
		dirm("keep/dir/"),
	), ExtractOptions{})
	if err != nil {
		t.Fatalf("ExtractTar: %v", err)
	}
	for p, want := range map[string]string{"etc/motd": "new", "etc/motd.keep": "old", "etc/emptydir": "now a file", "keep/dir/kept": "kept"} {
		if got, err := os.ReadFile(filepath.Join(s.root, p)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(s.root, "keep/dir")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("keep/dir: %v, %v; want mode 0755 from the archive", fi, err)
	}

	_, err = extract(t, s.root, buildTar(t, reg("keep/dir", "cannot replace a full directory")), ExtractOptions{})
	if err == nil || errors.Is(err, ErrHostile) || !strings.Contains(err.Error(), "keep/dir") {
		t.Errorf("replacing a non-empty directory: error = %v, want a plain error naming the entry", err)
	}
}

// TestExtractLegitimateSymlinks: absolute symlinks of a real root (var/run -> /run) are
// followed as if the root were "/", also by hard links, and missing parents are made.
func TestExtractLegitimateSymlinks(t *testing.T) {
	s := newSandbox(t)
	stats, err := extract(t, s.root, buildTar(t,
		dirm("run/"),
		dirm("var/"),
		symlink("var/run", "/run"),
		reg("var/run/through-abs", "a"),
		dirm("usr/lib/"),
		symlink("lib", "usr/lib"),
		reg("lib/through-rel", "b"),
		symlink("usr/lib64", "../usr/./lib/"),
		reg("usr/lib64/through-dotdot", "c"),
		hardlink("usr/hl", "/var/run/through-abs"),
		reg("deep/missing/parents/file", "d"),
		symlink("etc/localtime", "/usr/share/zoneinfo/Etc/UTC"), // dangling is fine
	), ExtractOptions{})
	if err != nil {
		t.Fatalf("ExtractTar: %v", err)
	}
	for p, want := range map[string]string{"run/through-abs": "a", "usr/lib/through-rel": "b", "usr/lib/through-dotdot": "c", "usr/hl": "a", "deep/missing/parents/file": "d"} {
		if got, err := os.ReadFile(filepath.Join(s.root, p)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
	if _, err := os.Lstat("/run/through-abs"); err == nil {
		t.Errorf("/run/through-abs was created on the host")
	}
	want := ExtractStats{Files: 4, Dirs: 3, Symlinks: 4, Hardlinks: 1, Bytes: 4}
	if stats != want {
		t.Errorf("stats = %+v, want %+v", stats, want)
	}
	s.check(t)
}

func TestExtractTruncated(t *testing.T) {
	archive := buildTar(t, reg("a", strings.Repeat("x", 5000)), reg("b", "y"))
	for _, cut := range []int{100, 512 + 2000, 512 + 5120 + 100} {
		s := newSandbox(t)
		_, err := extract(t, s.root, archive[:cut], ExtractOptions{})
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: error = %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
}

// countingReader counts what was read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestExtractReadsToTheEnd: what follows the end-of-archive marker (record padding,
// anything) is read, so a checksum over the stream covers all of it.
func TestExtractReadsToTheEnd(t *testing.T) {
	s := newSandbox(t)
	data := append(buildTar(t, reg("a", "x")), make([]byte, 3*tarReadAhead+5)...)
	cr := &countingReader{r: bytes.NewReader(data)}
	if _, err := ExtractTar(context.Background(), cr, s.root, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	if cr.n != int64(len(data)) {
		t.Errorf("read %d bytes of %d", cr.n, len(data))
	}
}

func TestExtractCancel(t *testing.T) {
	s := newSandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ExtractTar(ctx, bytes.NewReader(buildTar(t, reg("a", "x"))), s.root, ExtractOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
}

func TestExtractBadRoot(t *testing.T) {
	dir := t.TempDir()
	if _, err := extract(t, filepath.Join(dir, "missing"), buildTar(t, reg("a", "x")), ExtractOptions{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing root: error = %v, want ErrNotExist", err)
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct{ in, want, reason string }{
		{"etc/passwd", "etc/passwd", ""},
		{"/etc/passwd", "etc/passwd", ""},
		{"//etc//passwd/", "etc/passwd", ""},
		{"./etc/./passwd", "etc/passwd", ""},
		{"./", "", ""},
		{"/", "", ""},
		{"...", "...", ""},
		{"a..b/..c", "a..b/..c", ""},
		{"../x", "", `".."`},
		{"a/..", "", `".."`},
		{"/../x", "", `".."`},
		{"", "", "empty"},
	}
	for _, tt := range tests {
		got, reason := cleanName(tt.in)
		if got != tt.want || (tt.reason == "") != (reason == "") || !strings.Contains(reason, tt.reason) {
			t.Errorf("cleanName(%q) = %q, %q; want %q, reason with %q", tt.in, got, reason, tt.want, tt.reason)
		}
	}
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (owners, device nodes, security.* xattrs)")
	}
}
