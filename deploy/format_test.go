package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
)

func TestFormatRoundTrip(t *testing.T) {
	// Every value the schema's "format" enum allows.
	for _, s := range []string{"tar", "tar.gz", "tar.xz", "tar.zst", "tar.bz2", "raw", "raw.gz", "raw.xz", "raw.zst", "raw.bz2"} {
		f, err := ParseFormat(s)
		if err != nil {
			t.Errorf("ParseFormat(%q): %v", s, err)
			continue
		}
		if f.String() != s {
			t.Errorf("ParseFormat(%q).String() = %q", s, f.String())
		}
	}
	f, _ := ParseFormat("tar.zst")
	if f != (Format{Compression: "zstd", Payload: "tar"}) {
		t.Errorf("ParseFormat(tar.zst) = %+v", f)
	}
	for _, s := range []string{"", "zip", "tar.lz4", "tar.", "qcow2", "raw.gz.xz", "TAR"} {
		if _, err := ParseFormat(s); !errors.Is(err, ErrUnknownFormat) || !strings.Contains(err.Error(), strconv.Quote(s)) {
			t.Errorf("ParseFormat(%q) error = %v, want ErrUnknownFormat naming it", s, err)
		}
	}
}

// tarOf makes a small tar in the given format with a directory and a few files, one big
// enough that the compressed stream is longer than Sniff's first read.
func tarOf(t testing.TB, format tar.Format) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, data []byte) {
		h.Format = format
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	add(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("node1\n"))
	add(&tar.Header{Name: "usr/lib/big", Typeflag: tar.TypeReg, Mode: 0o644}, sampleData(1200<<10, 9))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// v7Tar rewrites a ustar archive's first header as an old v7 one: no magic, only a
// checksum to recognise it by.
func v7Tar(t testing.TB) []byte {
	b := tarOf(t, tar.FormatUSTAR)
	h := b[:512]
	clear(h[257:512])
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], []byte(strconv.FormatInt(int64(sum), 8)+"\x00 "))
	return b
}

// fsImage makes a filesystem with the given mkfs program on a sparse file of size bytes
// and returns its first 64 KiB (all that Sniff looks at), skipping when mkfs is missing.
func fsImage(t *testing.T, size int64, argv ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Skipf("%s is not installed", argv[0])
	}
	path := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(argv[0], append(argv[1:], path)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", argv[0], err, out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(f, head); err != nil {
		t.Fatal(err)
	}
	return head
}

func TestSniff(t *testing.T) {
	payloads := map[string]func(t *testing.T) []byte{
		"tar (pax)":  func(t *testing.T) []byte { return tarOf(t, tar.FormatPAX) },
		"tar (gnu)":  func(t *testing.T) []byte { return tarOf(t, tar.FormatGNU) },
		"tar (v7)":   func(t *testing.T) []byte { return v7Tar(t) },
		"raw (ext4)": func(t *testing.T) []byte { return fsImage(t, 8<<20, "mke2fs", "-q", "-F", "-t", "ext4") },
		"raw (ext2)": func(t *testing.T) []byte { return fsImage(t, 4<<20, "mke2fs", "-q", "-F", "-t", "ext2") },
		"raw (xfs)":  func(t *testing.T) []byte { return fsImage(t, 300<<20, "mkfs.xfs", "-q", "-f") },
	}
	decs := map[string]Decompressor{"go": {}}
	if _, err := exec.LookPath("xz"); err == nil {
		decs["exec"] = Decompressor{Run: run.Exec{}}
	}
	for name, mk := range payloads {
		t.Run(name, func(t *testing.T) {
			plain := mk(t)
			wantPayload := strings.Fields(name)[0]
			for _, codec := range append([]string{""}, codecs...) {
				data := plain
				if codec != "" {
					data = compress(t, codec, plain)
				}
				for dname, d := range decs {
					f, r, err := Sniff(context.Background(), bytes.NewReader(data), d)
					if err != nil {
						t.Errorf("%s/%s: Sniff: %v", codec, dname, err)
						continue
					}
					if f != (Format{Compression: codec, Payload: wantPayload}) {
						t.Errorf("%s/%s: Sniff = %+v, want %s %s", codec, dname, f, codec, wantPayload)
					}
					// The reader must replay every byte, including those Sniff read.
					got, err := io.ReadAll(r)
					if err != nil || !bytes.Equal(got, data) {
						t.Errorf("%s/%s: replay gave %d bytes (%v), want the %d of the input", codec, dname, len(got), err, len(data))
					}
				}
			}
		})
	}
}

// TestSniffBzip2BigBlock: bzip2 decodes nothing before a whole block (up to 900 kB) is
// in, so the probe must grow past its first read.
func TestSniffBzip2BigBlock(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := sampleData(2<<20, 11) // its first bzip2 block compresses to far more than 64 KiB
	tw.WriteHeader(&tar.Header{Name: "blob", Mode: 0o644, Size: int64(len(data))})
	tw.Write(data)
	tw.Close()
	compressed := compress(t, compBzip2, buf.Bytes())
	f, r, err := Sniff(context.Background(), bytes.NewReader(compressed), Decompressor{})
	if err != nil || f.String() != "tar.bz2" {
		t.Fatalf("Sniff = %v, %v; want tar.bz2", f, err)
	}
	got, _ := io.ReadAll(r)
	if !bytes.Equal(got, compressed) {
		t.Errorf("replay differs from the input")
	}
}

func TestSniffUnknown(t *testing.T) {
	html := []byte("<!DOCTYPE html><html><body>404 Not Found</body></html>\n")
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xaa
	tests := []struct {
		name string
		data []byte
		want []string // in the error message
	}{
		{"html", html, []string{"HTML", "3c 21 44 4f"}},
		{"gzip of html", compress(t, compGzip, html), []string{"gzip-compressed", "HTML"}},
		{"zeros", make([]byte, 1<<20), []string{"zeros", "00 00"}},
		{"mbr disk", mbr, []string{"MBR"}},
		{"elf", []byte("\x7fELF\x02\x01\x01\x00 and more bytes here"), []string{"ELF", "7f 45 4c 46"}},
		{"short text", []byte("hi"), []string{`"hi"`}},
		{"empty", nil, []string{"empty"}},
		{"broken gzip", append(bytes.Clone(magicGzip), "not deflate at all, just text"...), []string{"gzip", "does not decompress"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, r, err := Sniff(context.Background(), bytes.NewReader(tt.data), Decompressor{})
			if !errors.Is(err, ErrUnknownFormat) {
				t.Fatalf("Sniff error = %v, want ErrUnknownFormat", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if got, _ := io.ReadAll(r); !bytes.Equal(got, tt.data) {
				t.Errorf("replay gave %d bytes, want the %d of the input", len(got), len(tt.data))
			}
		})
	}
}

func TestSniffReadError(t *testing.T) {
	boom := errors.New("connection reset")
	_, _, err := Sniff(context.Background(), io.MultiReader(strings.NewReader("abc"), &failingReader{boom}), Decompressor{})
	if !errors.Is(err, boom) {
		t.Errorf("Sniff error = %v, want the read error", err)
	}
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }
