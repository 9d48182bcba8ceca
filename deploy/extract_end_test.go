package deploy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// toolTar archives a small tree (a file whose data ends in a non-zero byte, a directory
// and a file in it) with a tar program; nil when the program is not installed.
func toolTar(t *testing.T, argv ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Logf("%s is not installed: its archives are not tested", argv[0])
		return nil
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a"), []byte(strings.Repeat("a", 3000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "d", "b"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(argv[0], append(argv[1:], "-C", src, "-cf", "-", "a", "d")...).Output()
	if err != nil {
		t.Fatalf("%s: %v", argv[0], err)
	}
	return out
}

// dataEnd is where the last entry's data (and its padding) ends in an archive whose
// data ends in a non-zero byte: the end-of-archive marker starts there.
func dataEnd(b []byte) int {
	i := bytes.LastIndexFunc(b, func(r rune) bool { return r != 0 })
	return (i/blockSize + 1) * blockSize
}

const blockSize = 512

// TestExtractNeedsEndMarker: archive/tar reports io.EOF both after the end-of-archive
// marker (two zero blocks) and when the stream simply stops between entries; only the
// first is a complete image. Every case runs with readers that hand out data with
// io.EOF and one byte at a time.
func TestExtractNeedsEndMarker(t *testing.T) {
	// a: header 0, data 512..5512, padding to 5632; b: header 5632, data 6144..6145,
	// padding to 6656; the marker 6656..7680.
	two := buildTar(t, reg("a", strings.Repeat("x", 5000)), reg("b", "y"))
	if len(two) != 7680 {
		t.Fatalf("the archive is %d bytes, the offsets below assume 7680", len(two))
	}
	// z: header 0, data 512..20996 ending in 20 KiB of zeros, padding to 21504.
	zeros := buildTar(t, reg("z", "data"+strings.Repeat("\x00", 20<<10)))
	if len(zeros) != 22528 {
		t.Fatalf("the archive is %d bytes, the offsets below assume 22528", len(zeros))
	}
	const missing = "without its end-of-archive marker: truncated image"
	type tc struct {
		name string
		data []byte
		want string // "" for a complete archive
	}
	tests := []tc{
		{"complete", two, ""},
		{"complete, then record padding", append(bytes.Clone(two), make([]byte, 10240-len(two)%10240)...), ""},
		{"cut at an entry boundary", two[:5632], "the tar ends after 1 entries " + missing},
		{"cut after the last entry", two[:6656], "the tar ends after 2 entries " + missing},
		{"cut in the last entry's padding", two[:6145], "the tar ends after 2 entries " + missing},
		{"cut after one zero block", two[:7168], "the tar ends after 2 entries " + missing},
		{"cut in the second zero block", two[:7300], "unexpected EOF"},
		{"cut mid-entry", two[:3000], "unexpected EOF"},
		{"cut in a header", two[:5700], "unexpected EOF"},
		{"empty", nil, "the tar ends after 0 entries " + missing},
		{"data ending in zeros, then cut", zeros[:21504], "the tar ends after 1 entries " + missing},
		{"data ending in zeros, cut before the padding", zeros[:20996], "the tar ends after 1 entries " + missing},
		{"cut in data of zeros", zeros[:15000], "unexpected EOF"},
	}
	for _, tool := range [][]string{{"tar", "--format=gnu"}, {"tar", "--format=posix"}, {"bsdtar"}} {
		b := toolTar(t, tool...)
		if b == nil {
			continue
		}
		name := strings.Join(tool, " ")
		end := dataEnd(b)
		if end+1024 > len(b) {
			t.Fatalf("%s: no end-of-archive marker found (data ends at %d of %d bytes)", name, end, len(b))
		}
		tests = append(tests,
			tc{name + ", complete", b, ""},
			tc{name + ", cut before the marker", b[:end], missing},
			tc{name + ", cut after one zero block", b[:end+512], missing})
	}
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"plain", func(r io.Reader) io.Reader { return r }},
		{"data with EOF", iotest.DataErrReader},
		{"one byte at a time", iotest.OneByteReader},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				s := newSandbox(t)
				_, err := ExtractTar(context.Background(), rd.wrap(bytes.NewReader(tt.data)), s.root, ExtractOptions{Sparse: true})
				if tt.want == "" {
					if err != nil {
						t.Errorf("a complete archive failed: %v", err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrImage) {
					t.Errorf("error = %v, want an image error with %q", err, tt.want)
				}
			})
		}
	}
}
