package deploy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Payload kinds of a Format.
const (
	PayloadTar = "tar"
	PayloadRaw = "raw"
)

// ErrUnknownFormat is matched by Sniff's and ParseFormat's errors for data or a format
// name that is none of the image formats we deploy.
var ErrUnknownFormat = errors.New("unknown image format")

// Format is what an image stream holds, found from its magic bytes (never from its name).
type Format struct {
	Compression string // "", "gzip", "xz", "zstd", "bzip2"
	Payload     string // "tar" or "raw" (a filesystem image: ext2/3/4 magic 0xEF53 at byte 1080, xfs "XFSB" at 0; anything else that is not tar is "raw" only if it carries one of these)
}

// extensions maps each compression to its suffix in a spec's "format" value.
var extensions = []struct{ comp, ext string }{
	{compGzip, "gz"},
	{compXz, "xz"},
	{compZstd, "zst"},
	{compBzip2, "bz2"},
}

// String gives the spec's "format" value: "tar.zst", "raw.xz", "tar", ...
func (f Format) String() string {
	for _, e := range extensions {
		if e.comp == f.Compression {
			return f.Payload + "." + e.ext
		}
	}
	if f.Compression != "" {
		return f.Payload + "." + f.Compression
	}
	return f.Payload
}

// ParseFormat parses a spec "format" value ("tar", "tar.gz", "tar.xz", "tar.zst", "tar.bz2", "raw", "raw.gz", ...).
func ParseFormat(s string) (Format, error) {
	payload, ext, compressed := strings.Cut(s, ".")
	if payload != PayloadTar && payload != PayloadRaw {
		return Format{}, fmt.Errorf("%w %q: want tar or raw, optionally with .gz, .xz, .zst or .bz2", ErrUnknownFormat, s)
	}
	if !compressed {
		return Format{Payload: payload}, nil
	}
	for _, e := range extensions {
		if e.ext == ext {
			return Format{Compression: e.comp, Payload: payload}, nil
		}
	}
	return Format{}, fmt.Errorf("%w %q: unknown compression %q (want gz, xz, zst or bz2)", ErrUnknownFormat, s, ext)
}

// Magic numbers of the compressions (RFC 1952, the xz and zstd format specifications,
// bzip2's "BZh" followed by the block size digit).
var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicBzip2 = []byte("BZh")
)

// compressionOf names the compression whose magic begins b, or "".
func compressionOf(b []byte) string {
	switch {
	case bytes.HasPrefix(b, magicGzip):
		return compGzip
	case bytes.HasPrefix(b, magicXz):
		return compXz
	case bytes.HasPrefix(b, magicZstd):
		return compZstd
	// zstd skippable frames (magic 0x184D2A50-5F, little-endian) may lead a zstd stream.
	case len(b) >= 4 && binary.LittleEndian.Uint32(b)&0xfffffff0 == 0x184d2a50:
		return compZstd
	case len(b) >= 4 && bytes.HasPrefix(b, magicBzip2) && b[3] >= '1' && b[3] <= '9':
		return compBzip2
	}
	return ""
}

// Sizes of the probe. payloadProbe covers every magic payloadOf looks at (ext's ends at
// byte 1082). The compressed head grows from headStart to headMax until it decodes to
// that much: bzip2 needs a whole block (up to 900 kB of input) before its first byte.
const (
	payloadProbe = 4096
	headStart    = 64 << 10
	headMax      = 8 << 20
)

// Sniff peeks at r (it returns a reader that still yields every byte) and detects the format:
// the compression from the stream's magic, then the payload from the first decompressed bytes
// (tar: "ustar" at offset 257, or a valid old-style v7 header checksum).
//
// The probe decodes a copy of the stream's head with d (so an exec'd xz sees only those
// bytes and is done with them before Sniff returns); nothing is read from r beyond that
// head, which the returned reader replays. An error for data of an unknown kind matches
// ErrUnknownFormat and describes the first bytes seen; the returned reader is then still
// usable. Only a failure to read r returns no reader.
func Sniff(ctx context.Context, r io.Reader, d Decompressor) (Format, io.Reader, error) {
	head := make([]byte, 0, headStart)
	atEOF := false
	// more reads from r until head holds n bytes or r ends.
	more := func(n int) error {
		if n > cap(head) {
			grown := make([]byte, len(head), n)
			copy(grown, head)
			head = grown
		}
		k, err := io.ReadFull(r, head[len(head):n])
		head = head[:len(head)+k]
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			atEOF = true
			return nil
		}
		return err
	}
	if err := more(headStart); err != nil {
		return Format{}, nil, fmt.Errorf("reading the start of the image: %w", err)
	}
	replay := func() io.Reader {
		if atEOF {
			return bytes.NewReader(head)
		}
		return io.MultiReader(bytes.NewReader(head), r)
	}
	if len(head) == 0 {
		return Format{}, replay(), fmt.Errorf("%w: the image is empty", ErrUnknownFormat)
	}

	f := Format{Compression: compressionOf(head)}
	plain := head
	if f.Compression != "" {
		for {
			out, complete, err := probeDecode(ctx, d, head, f.Compression)
			if complete || ((atEOF || len(head) >= headMax) && err == nil) {
				plain = out
				break
			}
			if atEOF || len(head) >= headMax {
				if len(out) < 512 {
					return f, replay(), fmt.Errorf("%w: %s data that does not decompress: %w", ErrUnknownFormat, f.Compression, err)
				}
				plain = out // enough to tell a tar; the error shows again when it is read
				break
			}
			if err := more(min(2*len(head), headMax)); err != nil {
				return Format{}, nil, fmt.Errorf("reading the start of the image: %w", err)
			}
		}
	}
	f.Payload = payloadOf(plain)
	if f.Payload == "" {
		what := "data"
		if f.Compression != "" {
			what = f.Compression + "-compressed data"
		}
		return f, replay(), fmt.Errorf("%w: %s that is neither a tar archive nor an ext2/3/4 or xfs filesystem image: %s",
			ErrUnknownFormat, what, describe(plain))
	}
	return f, replay(), nil
}

// probeDecode decompresses head (a prefix of the stream) and returns up to payloadProbe
// bytes of its output. complete says that many were had, so the probe need not grow.
// err is the decoder's complaint, which for a prefix cut mid-stream is expected.
func probeDecode(ctx context.Context, d Decompressor, head []byte, compression string) ([]byte, bool, error) {
	rc, err := d.Open(ctx, bytes.NewReader(head), compression)
	if err != nil {
		return nil, false, err
	}
	out := make([]byte, payloadProbe)
	n, err := io.ReadFull(rc, out)
	rc.Close()
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		// The whole (short) stream decoded cleanly: there is no more to see.
		return out[:n], true, nil
	}
	return out[:n], n == len(out), err
}

// payloadOf says what the first decompressed bytes of an image are: "tar", "raw" or ""
// for anything else.
func payloadOf(b []byte) string {
	switch {
	case isTarHeader(b):
		return PayloadTar
	case len(b) >= 4 && string(b[:4]) == "XFSB":
		return PayloadRaw
	case len(b) >= 1082 && binary.LittleEndian.Uint16(b[1080:1082]) == 0xef53:
		return PayloadRaw
	}
	return ""
}

// isTarHeader reports whether b starts with a tar header: POSIX ustar and GNU tar both
// write "ustar" at offset 257; the old v7 format has no magic, so its checksum must match.
func isTarHeader(b []byte) bool {
	if len(b) < 512 {
		return false
	}
	if string(b[257:262]) == "ustar" {
		return true
	}
	field := strings.Trim(string(b[148:156]), " \x00")
	want, err := strconv.ParseUint(field, 8, 32)
	if err != nil || b[0] == 0 {
		return false
	}
	// The checksum is the byte sum of the header with its own field read as spaces;
	// some old tars summed signed bytes, which archive/tar also accepts.
	var unsigned, signed int64
	for i, c := range b[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return int64(want) == unsigned || int64(want) == signed
}

// describe names what the first bytes of unknown data look like, so the error says what
// was served (an HTML error page, a disk image with a partition table, ...).
func describe(b []byte) string {
	var kind string
	switch {
	case len(b) >= 4 && string(b[:4]) == "QFI\xfb":
		kind = "a qcow2 disk image"
	case len(b) >= 4 && string(b[:4]) == "\x7fELF":
		kind = "an ELF executable"
	case len(b) >= 4 && string(b[:4]) == "PK\x03\x04":
		kind = "a zip archive"
	case len(b) >= 4 && string(b[:4]) == "\x04\x22\x4d\x18":
		kind = "lz4-compressed data (not supported)"
	case len(b) >= 4 && string(b[:4]) == "hsqs":
		kind = "a squashfs image (not supported)"
	case len(b) >= 6 && (string(b[:6]) == "070701" || string(b[:6]) == "070707"):
		kind = "a cpio archive (not supported)"
	case len(b) >= 0x8006 && string(b[0x8001:0x8006]) == "CD001":
		kind = "an ISO 9660 image"
	case len(b) >= 520 && string(b[512:520]) == "EFI PART":
		kind = "a whole-disk image with a GPT (deploy a filesystem image instead)"
	case len(b) >= 512 && b[510] == 0x55 && b[511] == 0xaa:
		kind = "a whole-disk image with an MBR (deploy a filesystem image instead)"
	case bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("<")):
		kind = "HTML or XML text (an error page?)"
	case len(b) >= 512 && !bytes.ContainsFunc(b[:512], func(r rune) bool { return r != 0 }):
		kind = "zeros"
	}
	n := min(len(b), 16)
	s := fmt.Sprintf("first bytes % x %q", b[:n], b[:n])
	if kind != "" {
		s = kind + " (" + s + ")"
	}
	return s
}
