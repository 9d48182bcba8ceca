package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// capNetRaw is the security.capability value `setcap cap_net_raw+ep` writes: a v2
// vfs_cap_data (magic 0x02000000 | effective), permitted bit 13 (CAP_NET_RAW).
var capNetRaw = []byte{
	0x01, 0x00, 0x00, 0x02, // magic_etc
	0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // permitted, inheritable (low 32 bits)
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // permitted, inheritable (high 32 bits)
}

// at is a point in time with nanoseconds, as PAX keeps them.
func at(sec int64) time.Time { return time.Unix(1600000000+sec, 123456789) }

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return st
}

func lgetxattr(p, attr string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Lgetxattr(p, attr, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// sparseReader yields size bytes of zeros with one 'x' at off, without holding them.
type sparseReader struct{ size, off, pos int64 }

func (r *sparseReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), r.size-r.pos))
	clear(p[:n])
	if r.off >= r.pos && r.off < r.pos+int64(n) {
		p[r.off-r.pos] = 'x'
	}
	r.pos += int64(n)
	return n, nil
}

// TestExtractRealisticTree extracts an archive with everything a Linux root holds and
// checks each property with syscalls (and getcap when installed).
func TestExtractRealisticTree(t *testing.T) {
	requireRoot(t)
	const bigSize, bigOff = 100 << 20, 50<<20 + 7
	pax := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[xattrPrefix+kv[i]] = kv[i+1]
		}
		return m
	}
	selinux := "system_u:object_r:user_home_t:s0\x00"
	members := []member{
		{Header: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755, ModTime: at(0)}},
		{Header: tar.Header{Typeflag: tar.TypeDir, Name: "./bin/", Mode: 0o755, ModTime: at(1)}},
		{Header: tar.Header{Typeflag: tar.TypeReg, Name: "./bin/ping", Mode: 0o755, ModTime: at(2),
			PAXRecords: pax("security.capability", string(capNetRaw), "user.before", "1")}, body: []byte("ping")},
		{Header: tar.Header{Typeflag: tar.TypeReg, Name: "./bin/su", Mode: 0o4755, ModTime: at(2)}, body: []byte("su")},
		{Header: tar.Header{Typeflag: tar.TypeReg, Name: "./usr/bin/sg", Mode: 0o6755, Uid: 1000, Gid: 1000, ModTime: at(2)}, body: []byte("sg")},
		{Header: tar.Header{Typeflag: tar.TypeDir, Name: "./home/u/", Mode: 0o700, Uid: 1000, Gid: 1000, ModTime: at(3)}},
		{Header: tar.Header{Typeflag: tar.TypeReg, Name: "./home/u/a", Mode: 0o640, Uid: 1000, Gid: 1000, ModTime: at(4), AccessTime: at(5),
			PAXRecords: pax("user.test", "hello", "security.selinux", selinux)}, body: []byte("linked")},
		{Header: tar.Header{Typeflag: tar.TypeLink, Name: "./home/u/b", Linkname: "./home/u/a", Uid: 1000, Gid: 1000, ModTime: at(4)}},
		{Header: tar.Header{Typeflag: tar.TypeDir, Name: "./dev/", Mode: 0o755, ModTime: at(6)}},
		{Header: tar.Header{Typeflag: tar.TypeChar, Name: "./dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: at(7)}},
		{Header: tar.Header{Typeflag: tar.TypeBlock, Name: "./dev/loop9", Mode: 0o660, Gid: 6, Devmajor: 7, Devminor: 9, ModTime: at(7)}},
		{Header: tar.Header{Typeflag: tar.TypeDir, Name: "./run/", Mode: 0o755, ModTime: at(8)}},
		{Header: tar.Header{Typeflag: tar.TypeFifo, Name: "./run/initctl", Mode: 0o600, ModTime: at(9),
			PAXRecords: pax("security.selinux", selinux)}},
		{Header: tar.Header{Typeflag: tar.TypeDir, Name: "./var/", Mode: 0o755, ModTime: at(10)}},
		{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: "./var/run", Linkname: "/run", Uid: 1000, Gid: 1000, ModTime: at(11),
			PAXRecords: pax("security.selinux", selinux)}},
		{Header: tar.Header{Typeflag: tar.TypeDir, Name: "./tmp/", Mode: 0o1777, ModTime: at(12)}},
		{Header: tar.Header{Typeflag: tar.TypeDir, Name: "./big/", Mode: 0o755, ModTime: at(13)}},
	}
	// The 100 MiB file is streamed into the archive rather than held in memory twice.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		h := m.Header
		h.Format = tar.FormatPAX
		h.Size = int64(len(m.body))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		tw.Write(m.body)
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "./big/sparse", Mode: 0o644, Size: bigSize, ModTime: at(14), Format: tar.FormatPAX})
	io.Copy(tw, &sparseReader{size: bigSize, off: bigOff})
	tw.Close()

	s := newSandbox(t)
	stats, err := extract(t, s.root, buf.Bytes(), ExtractOptions{Sparse: true})
	if err != nil {
		t.Fatalf("ExtractTar: %v", err)
	}
	want := ExtractStats{Files: 5, Dirs: 8, Symlinks: 1, Hardlinks: 1, Devices: 3, Bytes: bigSize + int64(len("pingsusglinked"))}
	if stats != want {
		t.Errorf("stats = %+v, want %+v", stats, want)
	}
	p := func(rel string) string { return filepath.Join(s.root, rel) }

	type expect struct {
		typ, perm  uint32
		uid, gid   uint32
		mtime      time.Time
		rdev       uint64
		nlink      uint64
		checkMtime bool
	}
	for rel, e := range map[string]expect{
		".":           {unix.S_IFDIR, 0o755, 0, 0, at(0), 0, 0, true},
		"bin":         {unix.S_IFDIR, 0o755, 0, 0, at(1), 0, 0, true},
		"bin/ping":    {unix.S_IFREG, 0o755, 0, 0, at(2), 0, 1, true},
		"bin/su":      {unix.S_IFREG, 0o4755, 0, 0, at(2), 0, 1, true},
		"usr/bin/sg":  {unix.S_IFREG, 0o6755, 1000, 1000, at(2), 0, 1, true},
		"usr":         {unix.S_IFDIR, 0o755, 0, 0, time.Time{}, 0, 0, false}, // made for usr/bin/sg
		"home/u":      {unix.S_IFDIR, 0o700, 1000, 1000, at(3), 0, 0, true},
		"home/u/a":    {unix.S_IFREG, 0o640, 1000, 1000, at(4), 0, 2, true},
		"home/u/b":    {unix.S_IFREG, 0o640, 1000, 1000, at(4), 0, 2, true},
		"dev":         {unix.S_IFDIR, 0o755, 0, 0, at(6), 0, 0, true},
		"dev/null":    {unix.S_IFCHR, 0o666, 0, 0, at(7), unix.Mkdev(1, 3), 1, true},
		"dev/loop9":   {unix.S_IFBLK, 0o660, 0, 6, at(7), unix.Mkdev(7, 9), 1, true},
		"run":         {unix.S_IFDIR, 0o755, 0, 0, at(8), 0, 0, true},
		"run/initctl": {unix.S_IFIFO, 0o600, 0, 0, at(9), 0, 1, true},
		"var/run":     {unix.S_IFLNK, 0o777, 1000, 1000, at(11), 0, 1, true},
		"var":         {unix.S_IFDIR, 0o755, 0, 0, at(10), 0, 0, true},
		"tmp":         {unix.S_IFDIR, 0o1777, 0, 0, at(12), 0, 0, true},
		"big":         {unix.S_IFDIR, 0o755, 0, 0, at(13), 0, 0, true},
		"big/sparse":  {unix.S_IFREG, 0o644, 0, 0, at(14), 0, 1, true},
	} {
		st := lstat(t, p(rel))
		if st.Mode&unix.S_IFMT != e.typ || st.Mode&0o7777 != e.perm {
			t.Errorf("%s: mode %o, want type %o perm %04o", rel, st.Mode, e.typ, e.perm)
		}
		if st.Uid != e.uid || st.Gid != e.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, st.Uid, st.Gid, e.uid, e.gid)
		}
		if e.checkMtime && (st.Mtim.Sec != e.mtime.Unix() || st.Mtim.Nsec != int64(e.mtime.Nanosecond())) {
			t.Errorf("%s: mtime %v, want %v", rel, time.Unix(st.Mtim.Unix()), e.mtime)
		}
		if e.rdev != 0 && st.Rdev != e.rdev {
			t.Errorf("%s: rdev %d:%d, want %d:%d", rel, unix.Major(st.Rdev), unix.Minor(st.Rdev), unix.Major(e.rdev), unix.Minor(e.rdev))
		}
		if e.nlink != 0 && st.Nlink != e.nlink {
			t.Errorf("%s: %d links, want %d", rel, st.Nlink, e.nlink)
		}
	}
	if a, b := lstat(t, p("home/u/a")), lstat(t, p("home/u/b")); a.Ino != b.Ino {
		t.Errorf("home/u/a and home/u/b are not one inode")
	}
	if st := lstat(t, p("home/u/a")); st.Atim.Sec != at(5).Unix() {
		t.Errorf("home/u/a: atime %v, want %v", time.Unix(st.Atim.Unix()), at(5))
	}
	if target, err := os.Readlink(p("var/run")); err != nil || target != "/run" {
		t.Errorf("var/run -> %q, %v; want /run", target, err)
	}

	for _, x := range []struct{ rel, attr, want string }{
		{"bin/ping", "security.capability", string(capNetRaw)},
		{"bin/ping", "user.before", "1"},
		{"home/u/a", "user.test", "hello"},
		{"home/u/b", "security.selinux", selinux},
		{"run/initctl", "security.selinux", selinux},
		{"var/run", "security.selinux", selinux},
	} {
		if got, err := lgetxattr(p(x.rel), x.attr); err != nil || got != x.want {
			t.Errorf("%s: xattr %s = %q, %v; want %q", x.rel, x.attr, got, err, x.want)
		}
	}
	if _, err := exec.LookPath("getcap"); err == nil {
		out, err := exec.Command("getcap", p("bin/ping")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "cap_net_raw=ep") {
			t.Errorf("getcap bin/ping = %q, %v; want cap_net_raw=ep", out, err)
		}
	}

	st := lstat(t, p("big/sparse"))
	if st.Size != bigSize || st.Blocks*512 > 1<<20 {
		t.Errorf("big/sparse: size %d, %d bytes allocated; want %d with at most 1 MiB allocated", st.Size, st.Blocks*512, bigSize)
	}
	f, err := os.Open(p("big/sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 3)
	if _, err := f.ReadAt(b, bigOff-1); err != nil || string(b) != "\x00x\x00" {
		t.Errorf("big/sparse around its data: %q, %v", b, err)
	}
	s.check(t)
}

// TestExtractNotSparse: without Sparse every byte is written.
func TestExtractNotSparse(t *testing.T) {
	s := newSandbox(t)
	_, err := extract(t, s.root, buildTar(t, reg("zeros", string(make([]byte, 8<<20)))), ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := lstat(t, filepath.Join(s.root, "zeros")); st.Size != 8<<20 || st.Blocks*512 < 8<<20 {
		t.Errorf("size %d, %d bytes allocated; want all 8 MiB written", st.Size, st.Blocks*512)
	}
}

// TestExtractSparseEdges: holes at the start, the end, and a file that is all hole.
func TestExtractSparseEdges(t *testing.T) {
	s := newSandbox(t)
	data := make([]byte, 3*extractBufSize+100)
	data[extractBufSize+5] = 1 // one block of data in the second chunk
	_, err := extract(t, s.root, buildTar(t,
		reg("mixed", string(data)),
		reg("allzero", string(make([]byte, 10000))),
		reg("tail", "abc"+string(make([]byte, 9000))+"z"),
		reg("empty", ""),
	), ExtractOptions{Sparse: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{
		"mixed":   data,
		"allzero": make([]byte, 10000),
		"tail":    []byte("abc" + string(make([]byte, 9000)) + "z"),
		"empty":   {},
	} {
		got, err := os.ReadFile(filepath.Join(s.root, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes (%v), want %d identical bytes", name, len(got), err, len(want))
		}
	}
}

// TestExtractGNUTarTree archives a real tree with GNU tar (xattrs, capabilities, sparse
// files, devices) and compares every property of the extracted copy with the source,
// with stat, getfattr-like syscalls and getcap.
func TestExtractGNUTarTree(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"tar", "setcap", "getcap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (package tar / libcap2-bin)", tool)
		}
	}
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	in := func(rel string) string { return filepath.Join(src, rel) }
	must(os.MkdirAll(in("usr/bin"), 0o755))
	must(os.MkdirAll(in("home/u/.cache"), 0o700))
	must(os.MkdirAll(in("dev"), 0o755))
	must(os.MkdirAll(in("run"), 0o755))
	must(os.MkdirAll(in("var/lib"), 0o755))
	must(os.Mkdir(in("tmp"), 0o1777))
	must(os.WriteFile(in("usr/bin/ping"), []byte("\x7fELF ping"), 0o755))
	if out, err := exec.Command("setcap", "cap_net_raw+ep", in("usr/bin/ping")).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v: %s", err, out)
	}
	must(os.WriteFile(in("usr/bin/passwd"), []byte("passwd"), 0o644))
	must(unix.Chmod(in("usr/bin/passwd"), 0o4755))
	must(os.WriteFile(in("home/u/a"), []byte("shared inode"), 0o640))
	must(os.Link(in("home/u/a"), in("home/u/b")))
	must(unix.Lsetxattr(in("home/u/a"), "user.test", []byte("hello"), 0))
	must(unix.Lsetxattr(in("home/u/a"), "security.selinux", []byte("system_u:object_r:user_home_t:s0\x00"), 0))
	for _, rel := range []string{"home/u", "home/u/a", "home/u/.cache"} {
		must(os.Lchown(in(rel), 1000, 1000))
	}
	must(unix.Mknod(in("dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(in("run/initctl"), unix.S_IFIFO|0o600, 0))
	must(os.Symlink("/run", in("var/run")))
	must(os.Symlink("../usr/bin/ping", in("var/lib/ping")))
	sparse, err := os.Create(in("var/lib/sparse.img"))
	must(err)
	must(sparse.Truncate(100 << 20))
	_, err = sparse.WriteAt([]byte{'x'}, 60<<20)
	must(err)
	must(sparse.Close())
	// Distinct times, set last (children change directories' mtimes), deepest first.
	var all []string
	must(filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		all = append(all, p)
		return err
	}))
	slices.Reverse(all)
	for i, p := range all {
		ts := []unix.Timespec{unix.NsecToTimespec(at(int64(100 + i)).UnixNano()), unix.NsecToTimespec(at(int64(i)).UnixNano())}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}

	cmd := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--sparse", "--numeric-owner", "--format=posix", "-C", src, "-cf", "-", ".")
	var archive, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &archive, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tar: %v: %s", err, stderr.String())
	}
	must(os.Mkdir(dst, 0o700))
	if _, err := extract(t, dst, archive.Bytes(), ExtractOptions{Sparse: true}); err != nil {
		t.Fatalf("ExtractTar: %v", err)
	}

	inodes := map[uint64]uint64{} // source inode -> extracted inode
	must(filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		q := filepath.Join(dst, rel)
		a, b := lstat(t, p), lstat(t, q)
		if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Rdev != b.Rdev || a.Nlink != b.Nlink {
			t.Errorf("%s: mode %o owner %d:%d rdev %d links %d, want mode %o owner %d:%d rdev %d links %d",
				rel, b.Mode, b.Uid, b.Gid, b.Rdev, b.Nlink, a.Mode, a.Uid, a.Gid, a.Rdev, a.Nlink)
		}
		if a.Mode&unix.S_IFMT != unix.S_IFDIR && a.Size != b.Size {
			t.Errorf("%s: size %d, want %d", rel, b.Size, a.Size)
		}
		if a.Mtim != b.Mtim {
			t.Errorf("%s: mtime %v, want %v", rel, time.Unix(b.Mtim.Unix()), time.Unix(a.Mtim.Unix()))
		}
		if prev, ok := inodes[a.Ino]; ok && prev != b.Ino {
			t.Errorf("%s: hard link not kept", rel)
		}
		inodes[a.Ino] = b.Ino
		if a.Mode&unix.S_IFMT == unix.S_IFLNK {
			ta, _ := os.Readlink(p)
			tb, _ := os.Readlink(q)
			if ta != tb {
				t.Errorf("%s: symlink -> %q, want %q", rel, tb, ta)
			}
		}
		if xa, xb := xattrsOf(t, p), xattrsOf(t, q); xa != xb {
			t.Errorf("%s: xattrs %s, want %s", rel, xb, xa)
		}
		return nil
	}))
	ca, _ := exec.Command("getcap", "-r", src).Output()
	cb, _ := exec.Command("getcap", "-r", dst).Output()
	if strings.ReplaceAll(string(ca), src, "") != strings.ReplaceAll(string(cb), dst, "") || !strings.Contains(string(cb), "cap_net_raw=ep") {
		t.Errorf("getcap: extracted %q, source %q", cb, ca)
	}
	if st := lstat(t, filepath.Join(dst, "var/lib/sparse.img")); st.Blocks*512 > 1<<20 {
		t.Errorf("sparse.img: %d bytes allocated, want it sparse", st.Blocks*512)
	}
}

// xattrsOf renders all xattrs of p, sorted, as getfattr -d -m - would show them.
func xattrsOf(t *testing.T, p string) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		v, err := lgetxattr(p, name)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		fmt.Fprintf(&b, "%s=%q ", name, v)
	}
	return b.String()
}

// TestExtractParentCache: the cached parent directory must not outlive a change of
// what its path leads to.
func TestExtractParentCache(t *testing.T) {
	s := newSandbox(t)
	_, err := extract(t, s.root, buildTar(t,
		dirm("a/"), dirm("b/"),
		symlink("x", "a"),
		reg("x/one", "1"), // into a, through the symlink, caching "x"
		symlink("x", "b"), // replaced: x now leads to b
		reg("x/two", "2"),
	), ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]string{"a/one": "1", "b/two": "2"} {
		if got, err := os.ReadFile(filepath.Join(s.root, rel)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", rel, got, err, want)
		}
	}
}

// BenchmarkExtractTar extracts a synthetic root (many small files, some large) onto a
// tmpfs, and BenchmarkGNUTarExtract does the same with `tar -x` for comparison.
func BenchmarkExtractTar(b *testing.B) {
	archive, dir := benchSetup(b)
	b.SetBytes(int64(len(archive)))
	for i := 0; b.Loop(); i++ {
		root := filepath.Join(dir, fmt.Sprint(i))
		os.Mkdir(root, 0o755)
		if _, err := ExtractTar(context.Background(), bytes.NewReader(archive), root, ExtractOptions{Sparse: true}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(root)
		b.StartTimer()
	}
}

func BenchmarkGNUTarExtract(b *testing.B) {
	if _, err := exec.LookPath("tar"); err != nil {
		b.Skip("tar is not installed")
	}
	archive, dir := benchSetup(b)
	b.SetBytes(int64(len(archive)))
	for i := 0; b.Loop(); i++ {
		root := filepath.Join(dir, fmt.Sprint(i))
		os.Mkdir(root, 0o755)
		cmd := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", "-", "-C", root)
		cmd.Stdin = bytes.NewReader(archive)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("tar: %v: %s", err, out)
		}
		b.StopTimer()
		os.RemoveAll(root)
		b.StartTimer()
	}
}

// benchSetup builds a ~100 MB archive and a directory for it on /dev/shm when there is
// one (so the disk does not dominate).
func benchSetup(b *testing.B) ([]byte, string) {
	b.Helper()
	var members []member
	data := sampleData(8<<20, 3)
	for d := range 50 {
		members = append(members, dirm(fmt.Sprintf("usr/share/d%02d/", d)))
		for f := range 60 {
			n := (d*60 + f) * 3571 % 40000
			members = append(members, reg(fmt.Sprintf("usr/share/d%02d/f%03d", d, f), string(data[n:n+n%16000+100])))
		}
	}
	for i := range 8 {
		members = append(members, reg(fmt.Sprintf("usr/lib/big%d.so", i), string(data)))
	}
	archive := buildTar(b, members...)
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "extract-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return archive, dir
}
