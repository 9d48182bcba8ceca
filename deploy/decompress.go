package deploy

import (
	"bufio"
	"compress/bzip2"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/provisioner/provisioner/internal/run"
)

// Compression names used by Format and Decompressor.Open.
const (
	compGzip  = "gzip"
	compXz    = "xz"
	compZstd  = "zstd"
	compBzip2 = "bzip2"
)

// ErrUnknownCompression is matched by Open's error for a compression it does not know.
var ErrUnknownCompression = errors.New("unknown compression")

// Decompressor opens decompressing readers. Zstd and gzip use github.com/klauspost/compress
// (faster than the zstd and gzip programs on the build machines; zstd with
// WithDecoderConcurrency(1)); xz runs
// "xz -dc -T0" through Run when it is a run.Streamer and the xz binary exists (2–3× faster than
// the Go decoder), else github.com/ulikunitz/xz; bzip2 uses compress/bzip2.
type Decompressor struct {
	Run run.Runner // nil: pure Go decoders only
}

// xzArgv decodes every stream of the input (as the Go decoder does) with as many threads
// as cores; -T only helps for multi-block files, and older xz accept and ignore it.
var xzArgv = []string{"xz", "-dc", "-T0"}

// Open returns a reader of the decompressed bytes; Close releases decoders and waits for xz.
// compression is one of "", "gzip", "xz", "zstd", "bzip2"; "" passes r through. Every
// decoder checks its format's integrity data, so a corrupt or truncated stream ends in an
// error (naming the compression) and never in io.EOF.
func (d Decompressor) Open(ctx context.Context, r io.Reader, compression string) (io.ReadCloser, error) {
	switch compression {
	case "":
		return io.NopCloser(r), nil
	case compZstd:
		// One goroutine: faster than the default on 2-core machines, and it leaves the
		// other core to hashing and writing. IgnoreChecksum stays false: the frame
		// checksum is what catches corruption.
		dec, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("starting the zstd decoder: %w", err)
		}
		return &decoded{r: dec, name: compression, close: func() error { dec.Close(); return nil }}, nil
	case compGzip:
		// Multistream is the default: concatenated members (pigz, appended gzip) decode
		// as one, as gzip -dc does.
		zr, err := gzip.NewReader(bufio.NewReaderSize(r, 64<<10))
		if err != nil {
			return nil, fmt.Errorf("reading the gzip header: %w", noEOF(err))
		}
		return &decoded{r: zr, name: compression, close: zr.Close}, nil
	case compBzip2:
		return &decoded{r: bzip2.NewReader(bufio.NewReaderSize(r, 64<<10)), name: compression}, nil
	case compXz:
		if s, ok := d.Run.(run.Streamer); ok {
			rc, err := s.Stream(ctx, run.Cmd{Argv: xzArgv, Stdin: r})
			switch {
			case err == nil:
				return &decoded{r: rc, name: compression, close: rc.Close}, nil
			case !errors.Is(err, run.ErrNotFound):
				return nil, fmt.Errorf("starting xz: %w", err)
			}
			// No xz binary: fall through to the Go decoder. Stream did not read r.
		}
		// The LZMA decoder reads byte by byte, so it needs a buffered reader under it.
		xr, err := xz.NewReader(bufio.NewReaderSize(&xzTail{r: r}, 64<<10))
		if err != nil {
			return nil, fmt.Errorf("reading the xz header: %w", noEOF(err))
		}
		return &decoded{r: xr, name: compression}, nil
	}
	return nil, fmt.Errorf("%w %q (want gzip, xz, zstd or bzip2)", ErrUnknownCompression, compression)
}

// noEOF turns an io.EOF met inside a compressed stream's header into
// io.ErrUnexpectedEOF: there the input ended too early, it did not end cleanly.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// decoded names the compression in every error but io.EOF (which callers such as
// archive/tar compare with ==), so "decompressing xz: unexpected EOF" says where a
// truncated image was noticed.
type decoded struct {
	r     io.Reader
	name  string
	close func() error
	err   error // sticky, so a decoder is never asked again after it failed
}

func (d *decoded) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("decompressing %s: %w", d.name, err)
		d.err = err
	}
	return n, err
}

func (d *decoded) Close() error {
	if d.close == nil {
		return nil
	}
	c := d.close
	d.close = nil
	if err := c(); err != nil {
		return fmt.Errorf("decompressing %s: %w", d.name, err)
	}
	return nil
}

// xzTail guards ulikunitz/xz (v0.5.15) against a truncation it takes for a clean end: an
// input that ends right after a block, where the next block header or the index should
// follow, makes its reader return io.EOF. Every complete xz file ends with a stream
// footer (CRC32 of the next 6 bytes, backward size, stream flags, "YZ") and then only
// stream padding, whole groups of 4 zero bytes; xzTail passes the input through and turns
// its io.EOF into io.ErrUnexpectedEOF unless it ended that way.
type xzTail struct {
	r     io.Reader
	last  [xzFooterLen]byte // the last bytes up to the last non-zero byte
	seen  int               // how many bytes last holds (at most xzFooterLen)
	zeros int64             // zero bytes since the last non-zero byte
}

const xzFooterLen = 12

func (t *xzTail) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.track(p[:n])
	if err == io.EOF && !t.complete() {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func (t *xzTail) track(b []byte) {
	j := len(b) - 1
	for j >= 0 && b[j] == 0 {
		j--
	}
	if j < 0 {
		t.zeros += int64(len(b))
		return
	}
	// Shift the zeros that turned out to be data, then b up to its last non-zero byte,
	// into the window; only the last xzFooterLen bytes matter.
	var w []byte
	w = append(w, t.last[:t.seen]...)
	w = append(w, make([]byte, min(t.zeros, xzFooterLen))...)
	w = append(w, b[max(0, j+1-xzFooterLen):j+1]...)
	w = w[max(0, len(w)-xzFooterLen):]
	t.seen = copy(t.last[:], w)
	t.zeros = int64(len(b) - 1 - j)
}

func (t *xzTail) complete() bool {
	f := t.last
	return t.seen == xzFooterLen && t.zeros%4 == 0 &&
		f[10] == 'Y' && f[11] == 'Z' && f[8] == 0 &&
		binary.LittleEndian.Uint32(f[:4]) == crc32.ChecksumIEEE(f[4:10])
}
