package testimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/provisioner/provisioner/internal/deb/debtest"
)

// fakeKit points at small files, so image tests need neither apt nor a kernel.
func fakeKit(t *testing.T) *Kit {
	t.Helper()
	dir := t.TempDir()
	return &Kit{
		KernelVersion: testVer,
		Vmlinuz:       debtest.WriteTemp(t, dir, "vmlinuz", []byte("KERNEL")),
		Busybox:       debtest.WriteTemp(t, dir, "busybox", []byte("\x7fELF busybox")),
		Initrd:        debtest.WriteTemp(t, dir, "initrd.cpio.gz", []byte("INITRD")),
	}
}

// tarEntry is what a test checks of one member.
type tarEntry struct {
	hdr  *tar.Header
	data string
}

func imageTarGz(t *testing.T, k *Kit, o Options) ([]byte, []string, map[string]tarEntry) {
	t.Helper()
	var buf bytes.Buffer
	if err := k.WriteTarGz(&buf, o); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	entries := map[string]tarEntry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		entries[h.Name] = tarEntry{h, string(data)}
	}
	return buf.Bytes(), names, entries
}

// applets are the /bin links every image has, as tar names.
func applets() []string {
	var l []string
	for _, a := range rootApplets {
		l = append(l, "bin/"+a)
	}
	return l
}

func TestWriteTarGz(t *testing.T) {
	k := fakeKit(t)
	o := Options{
		Name:       "a",
		Marker:     "BOOTED-IMAGE-A",
		PrettyName: `Tiny test image "A"`,
		InitScript: "echo hello from A\nls /",
		Files: map[string]File{
			"usr/bin/provisioner": {Data: []byte("#!/bin/sh\n"), Mode: 0o755},
			"etc/motd":            {Data: []byte("hi\n")},
		},
	}
	gz, names, es := imageTarGz(t, k, o)
	again, _, _ := imageTarGz(t, k, o)
	if !bytes.Equal(gz, again) {
		t.Error("two writes of the same image differ")
	}

	want := append([]string{
		"bin/", "bin/busybox", "boot/", "boot/initrd.img-" + testVer, "boot/vmlinuz-" + testVer,
		"dev/", "etc/", "etc/image-id", "etc/motd", "etc/os-release", "lib64/",
		"lib64/ld-linux-x86-64.so.2", "proc/", "run/", "sbin/", "sbin/init", "sys/", "tmp/",
		"usr/", "usr/bin/", "usr/bin/provisioner",
	}, applets()...)
	if got, w := sorted(names), sorted(want); !slices.Equal(got, w) {
		t.Errorf("entries\n got %q\nwant %q", got, w)
	}
	checkOrderAndOwners(t, names, es)

	for name, w := range map[string]struct {
		mode int64
		data string
	}{
		"bin/busybox":                {0o755, "\x7fELF busybox"},
		"boot/vmlinuz-" + testVer:    {0o644, "KERNEL"},
		"boot/initrd.img-" + testVer: {0o644, "INITRD"},
		"etc/image-id":               {0o644, "BOOTED-IMAGE-A\n"},
		"etc/os-release":             {0o644, "NAME=\"Tiny\"\nPRETTY_NAME=\"Tiny test image \\\"A\\\"\"\nID=tiny-a\nVERSION_ID=1\n"},
		"etc/motd":                   {0o644, "hi\n"},
		"usr/bin/provisioner":        {0o755, "#!/bin/sh\n"},
		"lib64/ld-linux-x86-64.so.2": {0o755, ""},
		"tmp/":                       {0o1777, ""},
		"proc/":                      {0o555, ""},
		"usr/":                       {0o755, ""},
	} {
		e := es[name]
		if e.hdr == nil {
			continue // reported above
		}
		if e.hdr.Mode != w.mode || e.data != w.data {
			t.Errorf("%s: mode %#o content %q, want %#o %q", name, e.hdr.Mode, e.data, w.mode, w.data)
		}
	}
	if l := es["bin/sh"].hdr; l == nil || l.Typeflag != tar.TypeSymlink || l.Linkname != "busybox" {
		t.Errorf("bin/sh: %+v, want a symlink to busybox", l)
	}
	init := es["sbin/init"]
	for _, s := range []string{
		"#!/bin/sh\n", "export PATH=/bin", "mount -t proc proc /proc",
		`echo "$(cat /etc/image-id) root=$root uptime=$up" >/dev/console`,
		"echo hello from A\nls /\nsync\npoweroff -f\n",
	} {
		if !strings.Contains(init.data, s) {
			t.Errorf("sbin/init lacks %q:\n%s", s, init.data)
		}
	}
	if init.hdr.Mode != 0o755 {
		t.Errorf("sbin/init mode %#o", init.hdr.Mode)
	}
	// The marker line must come before the test's lines, which come before poweroff.
	if i, j := strings.Index(init.data, "image-id"), strings.Index(init.data, "hello from A"); i < 0 || j < i {
		t.Error("sbin/init runs the InitScript before printing the marker")
	}
}

func TestWriteTarGzNoKernel(t *testing.T) {
	k := fakeKit(t)
	// A utility image needs only busybox: a Kit without kernel must do.
	k.Vmlinuz, k.Initrd, k.KernelVersion = "", "", ""
	_, names, es := imageTarGz(t, k, Options{
		Name:     "util",
		NoKernel: true,
		Files:    map[string]File{"opt/tool": {Data: []byte("x"), Mode: 0o700}},
	})
	want := append([]string{"bin/", "bin/busybox", "etc/", "etc/image-id", "etc/os-release", "opt/", "opt/tool"}, applets()...)
	if got, w := sorted(names), sorted(want); !slices.Equal(got, w) {
		t.Errorf("entries\n got %q\nwant %q", got, w)
	}
	checkOrderAndOwners(t, names, es)
	if got := es["etc/os-release"].data; !strings.Contains(got, `PRETTY_NAME="Tiny test image util"`) || !strings.Contains(got, "ID=tiny-util\n") {
		t.Errorf("os-release:\n%s", got)
	}
}

func TestWriteTarGzFiles(t *testing.T) {
	k := fakeKit(t)
	_, _, es := imageTarGz(t, k, Options{
		Name:   "b",
		Marker: "B",
		Files: map[string]File{
			"etc/os-release":       {Data: []byte("ID=custom\n")}, // replaces the built-in one
			"var/log":              {Mode: fs.ModeDir | 0o750},    // an explicit directory
			"usr/lib/os-release":   {Data: []byte("../../etc/os-release"), Mode: fs.ModeSymlink},
			"usr/local/bin/helper": {Data: []byte("h"), Mode: 0o4755 & fs.ModePerm}, // permission bits only
		},
	})
	if got := es["etc/os-release"].data; got != "ID=custom\n" {
		t.Errorf("etc/os-release = %q, want the File's content", got)
	}
	if h := es["var/log/"].hdr; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o750 {
		t.Errorf("var/log/: %+v", h)
	}
	if h := es["var/"].hdr; h == nil || h.Mode != 0o755 {
		t.Errorf("implicit var/: %+v", h)
	}
	if h := es["usr/lib/os-release"].hdr; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "../../etc/os-release" {
		t.Errorf("usr/lib/os-release: %+v", h)
	}
	for _, d := range []string{"usr/", "usr/lib/", "usr/local/", "usr/local/bin/"} {
		if es[d].hdr == nil {
			t.Errorf("implicit directory %s missing", d)
		}
	}
}

func TestWriteTarGzErrors(t *testing.T) {
	k := fakeKit(t)
	tests := []struct {
		name string
		kit  *Kit
		o    Options
		want string
	}{
		{"empty name", k, Options{Marker: "M"}, "image name"},
		{"bad name", k, Options{Name: "A B", Marker: "M"}, "image name"},
		{"no marker", k, Options{Name: "a"}, "marker"},
		{"two-line marker", k, Options{Name: "a", Marker: "M\nN"}, "marker"},
		{"two-line pretty name", k, Options{Name: "a", Marker: "M", PrettyName: "x\ny"}, "pretty name"},
		{"absolute file", k, Options{Name: "a", Marker: "M", Files: map[string]File{"/etc/x": {}}}, "file path"},
		{"dotdot file", k, Options{Name: "a", Marker: "M", Files: map[string]File{"../x": {}}}, "file path"},
		{"trailing slash", k, Options{Name: "a", Marker: "M", Files: map[string]File{"etc/": {}}}, "file path"},
		{"file over a directory", k, Options{Name: "a", Marker: "M", Files: map[string]File{"boot": {Data: []byte("x")}}}, "conflicts"},
		{"file under a file", k, Options{Name: "a", Marker: "M", Files: map[string]File{"sbin/init/x": {}}}, "not a directory"},
		{"device file", k, Options{Name: "a", Marker: "M", Files: map[string]File{"dev/null": {Mode: fs.ModeDevice}}}, "unsupported mode"},
		{"kit without kernel", &Kit{Busybox: k.Busybox}, Options{Name: "a", Marker: "M"}, "incomplete Kit"},
		{"kernel file missing", &Kit{Busybox: k.Busybox, Vmlinuz: k.Vmlinuz + ".gone", Initrd: k.Initrd, KernelVersion: testVer},
			Options{Name: "a", Marker: "M"}, "vmlinuz.gone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.kit.WriteTarGz(io.Discard, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// checkOrderAndOwners checks what extraction relies on: every parent directory comes
// first, and owners and times are fixed.
func checkOrderAndOwners(t *testing.T, names []string, es map[string]tarEntry) {
	t.Helper()
	seen := map[string]bool{}
	for _, n := range names {
		h := es[n].hdr
		if d := path.Dir(strings.TrimSuffix(n, "/")); d != "." && !seen[d+"/"] {
			t.Errorf("%s comes before its directory %s/", n, d)
		}
		seen[n] = true
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(imageMTime) {
			t.Errorf("%s: uid %d gid %d mtime %v", n, h.Uid, h.Gid, h.ModTime)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}
