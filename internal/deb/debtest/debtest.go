// Package debtest builds synthetic .deb archives for tests of packages that read Debian
// packages (internal/deb, internal/testimage): ar archives laid out the way dpkg-deb
// writes them, tar members, and their xz and zstd compressions.
//
// It imports nothing of this module, so the reader it feeds cannot lend it a mistake: the
// ar magic and header length are written out here rather than taken from internal/deb.
package debtest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Member is one ar member of a synthetic .deb.
type Member struct {
	Name string
	Data []byte
}

// Ar builds an ar archive the way dpkg-deb does: space-padded names (gnuNames adds the
// GNU "/" suffix, which readers also accept), decimal sizes, odd members padded to even.
func Ar(t testing.TB, gnuNames bool, members ...Member) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range members {
		name := m.Name
		if gnuNames {
			name += "/"
		}
		hdr := fmt.Sprintf("%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(m.Data))
		if len(hdr) != 60 {
			t.Fatalf("ar header of %s is %d bytes", m.Name, len(hdr))
		}
		b.WriteString(hdr)
		b.Write(m.Data)
		if len(m.Data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// TarFile is one entry of a synthetic data.tar; a Name ending in "/" is a directory.
type TarFile struct {
	Name string
	Data string
	Link string // makes a symlink
}

// Tar builds an uncompressed tar archive of files, in order: regular files 0644,
// directories 0755, symlinks where Link is set.
func Tar(t testing.TB, files ...TarFile) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: 0o644, Size: int64(len(f.Data)), Typeflag: tar.TypeReg}
		switch {
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, f.Link, 0
		case f.Name[len(f.Name)-1] == '/':
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(f.Data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// XZ returns data compressed with xz.
func XZ(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := xz.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Zstd returns data compressed with zstd.
func Zstd(t testing.TB, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

// Deb builds a .deb of files whose data member is data.tar.<comp> (comp "xz" or "zst"),
// after a debian-binary of "2.0" and a minimal control.tar.xz.
func Deb(t testing.TB, comp string, files ...TarFile) []byte {
	t.Helper()
	data := Tar(t, files...)
	switch comp {
	case "xz":
		data = XZ(t, data)
	case "zst":
		data = Zstd(t, data)
	default:
		t.Fatalf("compression %q", comp)
	}
	control := XZ(t, Tar(t, TarFile{Name: "./control", Data: "Package: x\n"}))
	return Ar(t, false,
		Member{Name: "debian-binary", Data: []byte("2.0\n")},
		Member{Name: "control.tar.xz", Data: control},
		Member{Name: "data.tar." + comp, Data: data},
	)
}

// WriteTemp writes data to a new file name in dir and returns its path.
func WriteTemp(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ReadString returns the contents of the file at p.
func ReadString(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
