package deploy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/provisioner/provisioner/internal/run"
)

// codecs are every compression Open knows.
var codecs = []string{compGzip, compXz, compZstd, compBzip2}

// compress compresses data with the given codec: klauspost and ulikunitz writers, and
// the bzip2 program (Go has no bzip2 writer), skipping the test when it is missing.
func compress(t testing.TB, codec string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch codec {
	case compGzip:
		w := gzip.NewWriter(&buf)
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case compZstd:
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case compXz:
		w, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case compBzip2:
		if _, err := exec.LookPath("bzip2"); err != nil {
			t.Skip("bzip2 is not installed")
		}
		cmd := exec.Command("bzip2", "-c")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bzip2: %v", err)
		}
		return out
	default:
		t.Fatalf("unknown codec %q", codec)
	}
	return buf.Bytes()
}

// sampleData is half random, half repetitive text, so that compressed streams are
// neither trivial nor all literals.
func sampleData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := 0; i < n; {
		if r.IntN(2) == 0 {
			for j := 0; j < 1000 && i < n; j, i = j+1, i+1 {
				b[i] = byte(r.Uint32())
			}
		} else {
			i += copy(b[i:], strings.Repeat("the quick brown fox ", 50))
		}
	}
	return b
}

// decoders gives each way Open can decode: pure Go, and xz through the real program.
func decoders(t *testing.T, codec string) map[string]Decompressor {
	m := map[string]Decompressor{"go": {}, "fake runner": {Run: &run.Fake{}}}
	if codec == compXz {
		if _, err := exec.LookPath("xz"); err == nil {
			m["exec"] = Decompressor{Run: run.Exec{}}
		} else {
			t.Log("xz is not installed: the exec path is not tested")
		}
	}
	return m
}

func decodeAll(t *testing.T, d Decompressor, compressed []byte, codec string) ([]byte, error) {
	t.Helper()
	rc, err := d.Open(context.Background(), bytes.NewReader(compressed), codec)
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return out, err
}

func TestDecompressRoundTrip(t *testing.T) {
	data := sampleData(3<<20+17, 1)
	for _, codec := range codecs {
		compressed := compress(t, codec, data)
		for name, d := range decoders(t, codec) {
			t.Run(codec+"/"+name, func(t *testing.T) {
				out, err := decodeAll(t, d, compressed, codec)
				if err != nil {
					t.Fatalf("decoding: %v", err)
				}
				if !bytes.Equal(out, data) {
					t.Errorf("decoded %d bytes, want the original %d", len(out), len(data))
				}
			})
		}
	}
}

func TestDecompressNone(t *testing.T) {
	out, err := decodeAll(t, Decompressor{}, []byte("plain"), "")
	if err != nil || string(out) != "plain" {
		t.Errorf("got %q, %v; want the input passed through", out, err)
	}
}

func TestDecompressUnknown(t *testing.T) {
	_, err := Decompressor{}.Open(context.Background(), strings.NewReader("x"), "lz4")
	if !errors.Is(err, ErrUnknownCompression) || !strings.Contains(err.Error(), "lz4") {
		t.Errorf("error = %v, want ErrUnknownCompression naming lz4", err)
	}
}

// TestXzExecMatchesGo: the fast path and the fallback must give identical bytes, also
// for a multi-block file made by the xz program (as image builders make them).
func TestXzExecMatchesGo(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz is not installed")
	}
	data := sampleData(5<<20, 2)
	cmd := exec.Command("xz", "-c", "-T2", "--block-size=1MiB")
	cmd.Stdin = bytes.NewReader(data)
	multi, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz: %v", err)
	}
	for name, compressed := range map[string][]byte{"ulikunitz writer": compress(t, compXz, data), "xz multi-block": multi} {
		t.Run(name, func(t *testing.T) {
			viaExec, err := decodeAll(t, Decompressor{Run: run.Exec{}}, compressed, compXz)
			if err != nil {
				t.Fatalf("exec xz: %v", err)
			}
			viaGo, err := decodeAll(t, Decompressor{}, compressed, compXz)
			if err != nil {
				t.Fatalf("Go xz: %v", err)
			}
			if !bytes.Equal(viaExec, viaGo) || !bytes.Equal(viaGo, data) {
				t.Errorf("exec gave %d bytes, Go %d, want both identical to the %d original", len(viaExec), len(viaGo), len(data))
			}
		})
	}
}

// notFoundStreamer stands for a machine without the xz program.
type notFoundStreamer struct{}

func (notFoundStreamer) Run(ctx context.Context, cmd run.Cmd) (run.Result, error) {
	return run.Result{}, &run.Error{Argv: cmd.Argv, ExitCode: -1, Err: exec.ErrNotFound}
}

func (notFoundStreamer) Stream(ctx context.Context, cmd run.Cmd) (io.ReadCloser, error) {
	return nil, &run.Error{Argv: cmd.Argv, ExitCode: -1, Err: exec.ErrNotFound}
}

func TestXzFallsBackWithoutProgram(t *testing.T) {
	data := sampleData(100000, 3)
	out, err := decodeAll(t, Decompressor{Run: notFoundStreamer{}}, compress(t, compXz, data), compXz)
	if err != nil || !bytes.Equal(out, data) {
		t.Errorf("fallback decode: %d bytes, %v; want the data", len(out), err)
	}
}

// TestDecompressDamaged: a cut or corrupted stream must end in an error, never in a
// clean EOF after fewer bytes: a truncated download is never a success.
func TestDecompressDamaged(t *testing.T) {
	data := sampleData(2<<20, 4)
	for _, codec := range codecs {
		good := compress(t, codec, data)
		damaged := map[string][]byte{
			"cut in the middle":   good[:len(good)/2],
			"cut before the end":  good[:len(good)-3],
			"header only":         good[:min(len(good), 12)],
			"corrupt in the data": flip(good, len(good)/2),
			"cut after a block":   good[:blockEnd(t, codec, good)],
			"corrupt near end":    flip(good, len(good)-40),
		}
		for name, d := range decoders(t, codec) {
			for what, in := range damaged {
				t.Run(codec+"/"+name+"/"+what, func(t *testing.T) {
					out, err := decodeAll(t, d, in, codec)
					if err == nil {
						t.Fatalf("decoded %d bytes without error, want an error", len(out))
					}
					if errors.Is(err, io.EOF) {
						t.Errorf("error = %v, must not be io.EOF", err)
					}
					if !strings.Contains(err.Error(), codec) {
						t.Errorf("error = %v, want it to name %s", err, codec)
					}
				})
			}
		}
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x55
	return c
}

// TestXzProgramFailsMidStream: when the xz program dies on corrupt data after having
// produced output, the reader returns its *run.Error with xz's complaint.
func TestXzProgramFailsMidStream(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz is not installed")
	}
	good := compress(t, compXz, sampleData(4<<20, 5))
	bad := flip(good, len(good)*3/4)
	rc, err := Decompressor{Run: run.Exec{}}.Open(context.Background(), bytes.NewReader(bad), compXz)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	out, err := io.ReadAll(rc)
	var re *run.Error
	if !errors.As(err, &re) {
		t.Fatalf("read error = %v, want a *run.Error", err)
	}
	if re.ExitCode != 1 || !strings.Contains(re.Stderr, "corrupt") || re.Argv[0] != "xz" {
		t.Errorf("run.Error = %+v, want xz exiting 1 with its complaint", re)
	}
	if len(out) == 0 {
		t.Errorf("no output before the failure: the corruption was meant to be mid-stream")
	}
	if cerr := rc.Close(); !errors.As(cerr, &re) {
		t.Errorf("Close = %v, want the *run.Error", cerr)
	}
}

func TestXzContextCancel(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz is not installed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe() // input that never ends
	defer pw.Close()
	rc, err := Decompressor{Run: run.Exec{}}.Open(ctx, pr, compXz)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Errorf("read error = %v, want context.Canceled", err)
	}
	pw.Close() // lets the copy into xz's stdin end, which Close waits for
	rc.Close()
}

// blockEnd is where a stream's last block ends: for xz, right before its index (the
// footer's backward size gives the index's length), where ulikunitz/xz alone would see a
// clean end; for the others the middle will do.
func blockEnd(t *testing.T, codec string, b []byte) int {
	if codec != compXz {
		return len(b) / 2
	}
	footer := b[len(b)-12:]
	if string(footer[10:]) != "YZ" {
		t.Fatalf("no xz footer")
	}
	index := (int(footer[4]) | int(footer[5])<<8 | int(footer[6])<<16 | int(footer[7])<<24 + 1) * 4
	return len(b) - 12 - index
}

// TestXzStreamsAndPadding: concatenated streams and stream padding (whole groups of 4
// zero bytes) are a clean end, for the Go decoder as for the program; padding that is
// not a multiple of 4 is not.
func TestXzStreamsAndPadding(t *testing.T) {
	a, b := sampleData(300000, 12), sampleData(200000, 13)
	two := append(compress(t, compXz, a), make([]byte, 8)...)
	two = append(two, compress(t, compXz, b)...)
	good := map[string][]byte{
		"two streams":        two,
		"padding at the end": append(bytes.Clone(two), make([]byte, 4096)...),
	}
	for name, d := range decoders(t, compXz) {
		for what, in := range good {
			out, err := decodeAll(t, d, in, compXz)
			if err != nil || !bytes.Equal(out, append(bytes.Clone(a), b...)) {
				t.Errorf("%s/%s: %d bytes, %v; want both streams' data", name, what, len(out), err)
			}
		}
		if _, err := decodeAll(t, d, append(bytes.Clone(two), 0, 0, 0), compXz); err == nil {
			t.Errorf("%s: padding of 3 bytes accepted", name)
		}
	}
}

func TestXzTail(t *testing.T) {
	stream := compress(t, compXz, []byte("hello"))
	// Feed it in every split, so the footer window crosses Read boundaries.
	for cut := range len(stream) {
		var tail xzTail
		tail.track(stream[:cut])
		tail.track(stream[cut:])
		if !tail.complete() {
			t.Fatalf("split at %d: a whole stream is not complete", cut)
		}
	}
	var tail xzTail
	tail.track(stream[:len(stream)-1])
	if tail.complete() {
		t.Error("a stream missing its last byte is complete")
	}
	tail = xzTail{}
	tail.track(stream)
	tail.track(make([]byte, 7))
	tail.track([]byte{0})
	if !tail.complete() {
		t.Error("8 bytes of padding in two reads: not complete")
	}
}
