package deploy

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// Digest is an expected checksum.
type Digest struct {
	Algo string // "sha256", "sha512" or "md5"
	Hex  string // lower-case
}

// String returns "algo:hex", the form a spec's checksum takes; "" for a zero Digest.
func (d Digest) String() string {
	if d == (Digest{}) {
		return ""
	}
	return d.Algo + ":" + d.Hex
}

// digestLen is the hex length of each supported algorithm; it also tells the algorithm
// of a GNU checksum line, which does not name it.
var digestLen = map[string]int{"md5": 32, "sha256": 64, "sha512": 128}

// algoRank orders algorithms by strength, for a checksum file that lists several for
// one image.
var algoRank = map[string]int{"md5": 1, "sha256": 2, "sha512": 3}

func newHash(algo string) hash.Hash {
	switch algo {
	case "md5":
		return md5.New()
	case "sha256":
		return sha256.New()
	case "sha512":
		return sha512.New()
	}
	return nil
}

// ErrChecksum is matched (errors.Is) by every *ChecksumError.
var ErrChecksum = errors.New("checksum mismatch")

// ChecksumError reports an image whose bytes do not hash to the expected digest.
type ChecksumError struct {
	Source           string // the image, as given to Verify
	Algo             string // "sha256", "sha512" or "md5"
	Expected, Actual string // lower-case hex
}

// Error reads "checksum mismatch for <src>: sha256 expected <hex>, got <hex>".
func (e *ChecksumError) Error() string {
	return fmt.Sprintf("checksum mismatch for %s: %s expected %s, got %s", e.Source, e.Algo, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrChecksum) and errors.Is(err, ErrImage) true.
func (e *ChecksumError) Is(target error) bool { return target == ErrChecksum || target == ErrImage }

// ResolveDigest turns an image's "checksum" value into a Digest: "sha256:<hex>", "sha512:<hex>",
// "md5:<hex>" directly; an http(s):// or file:// URL, or a path containing a slash, is fetched with f.Get and parsed as a
// checksum file (GNU coreutils format "<hex>  <name>" or "<hex> *<name>", and BSD format
// "SHA256 (<name>) = <hex>"), picking the line whose name equals the base name of imageSrc
// (the last path element of its URL path, query ignored); the algorithm comes from the
// BSD tag or, for GNU lines, from the hex length (32 md5, 64 sha256, 128 sha512). Errors name
// the checksum URL and the file name looked for. An empty checksum returns a zero Digest.
func (f *Fetcher) ResolveDigest(ctx context.Context, checksum, imageSrc string) (Digest, error) {
	checksum = strings.TrimSpace(checksum)
	if checksum == "" {
		return Digest{}, nil
	}
	if algo, hexs, ok := strings.Cut(checksum, ":"); ok {
		if a := strings.ToLower(algo); digestLen[a] != 0 {
			d, err := parseDigest(a, hexs)
			if err != nil {
				return Digest{}, fmt.Errorf("checksum %q: %w", checksum, err)
			}
			return d, nil
		}
	}
	lower := strings.ToLower(checksum)
	isURL := strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://") || strings.HasPrefix(lower, "file://")
	// A path needs a slash ("./SHA256SUMS"), so that a mistyped digest ("sha1-abc") is not
	// taken for a file name; images accept plain paths, so their checksum files do too.
	isPath := strings.Contains(checksum, "/") && !strings.Contains(checksum, ":")
	if !isURL && !isPath {
		return Digest{}, fmt.Errorf("checksum %q: want sha256:<hex>, sha512:<hex>, md5:<hex>, or the http(s):// or file:// URL or the path (with a /) of a checksum file", checksum)
	}
	shown := checksum
	if u, err := url.Parse(checksum); err == nil {
		shown = u.Redacted()
	}
	name := imageFileName(imageSrc)
	if name == "" {
		return Digest{}, fmt.Errorf("checksum file %s: image source %q has no file name to look up", shown, imageSrc)
	}
	data, err := f.Get(ctx, checksum)
	if err != nil {
		return Digest{}, fmt.Errorf("checksum file for %s: %w", name, err)
	}
	d, err := pickDigest(data, name)
	if err != nil {
		return Digest{}, fmt.Errorf("checksum file %s: %w", shown, err)
	}
	return d, nil
}

func parseDigest(algo, hexs string) (Digest, error) {
	hexs = strings.ToLower(strings.TrimSpace(hexs))
	if want := digestLen[algo]; len(hexs) != want {
		return Digest{}, fmt.Errorf("a %s digest has %d hex digits, not %d", algo, want, len(hexs))
	}
	if _, err := hex.DecodeString(hexs); err != nil {
		return Digest{}, fmt.Errorf("%s digest %q is not hexadecimal", algo, hexs)
	}
	return Digest{Algo: algo, Hex: hexs}, nil
}

// imageFileName is the name a checksum file lists an image under: the last element of
// its path (URL-decoded, query ignored).
func imageFileName(src string) string {
	u, p, err := parseSource(src)
	if err != nil {
		return ""
	}
	var name string
	if u != nil {
		name = path.Base(u.Path)
	} else {
		name = filepath.Base(p)
	}
	if name == "/" || name == "." {
		return ""
	}
	return name
}

// bsdLine matches "SHA256 (name) = hex" as written by BSD tools, coreutils --tag and
// OpenSSL ("SHA2-256(name)= hex").
var bsdLine = regexp.MustCompile(`^([A-Za-z0-9-]+) ?\((.*)\) ?= ?([0-9A-Fa-f]+)$`)

var bsdTags = map[string]string{
	"MD5": "md5", "SHA256": "sha256", "SHA2-256": "sha256", "SHA512": "sha512", "SHA2-512": "sha512",
}

// checksumEntry is one line of a checksum file; algo is "" when unsupported (e.g. sha1).
type checksumEntry struct {
	name, algo, hex string
}

// pickDigest finds the digest for name in a checksum file. A line names the image when
// its file name equals name (a leading "./" ignored) or, failing any such line, when
// exactly one listed path ends in /name (files made by "sha256sum dir/*"). Several
// algorithms for the image: the strongest wins.
func pickDigest(data []byte, name string) (Digest, error) {
	var exact, byBase []checksumEntry
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, ok := parseChecksumLine(line)
		if !ok {
			continue
		}
		e.name = strings.TrimPrefix(e.name, "./")
		switch {
		case e.name == name:
			exact = append(exact, e)
		case path.Base(e.name) == name:
			byBase = append(byBase, e)
		}
	}
	entries := exact
	if len(entries) == 0 {
		for _, e := range byBase[min(1, len(byBase)):] {
			if e.name != byBase[0].name {
				return Digest{}, fmt.Errorf("no entry for %q, and several paths end in it (%q, %q)", name, byBase[0].name, e.name)
			}
		}
		entries = byBase
	}
	if len(entries) == 0 {
		return Digest{}, fmt.Errorf("no entry for %q", name)
	}
	var best checksumEntry
	for _, e := range entries {
		switch {
		case e.algo == "":
		case best.algo == "" || algoRank[e.algo] > algoRank[best.algo]:
			best = e
		case e.algo == best.algo && e.hex != best.hex:
			return Digest{}, fmt.Errorf("conflicting %s entries for %q", e.algo, name)
		}
	}
	if best.algo == "" {
		return Digest{}, fmt.Errorf("entry for %q has a %d-digit digest: not md5, sha256 or sha512", name, len(entries[0].hex))
	}
	return Digest{Algo: best.algo, Hex: best.hex}, nil
}

// parseChecksumLine reads a BSD or GNU line; ok is false for anything else.
func parseChecksumLine(line string) (e checksumEntry, ok bool) {
	if m := bsdLine.FindStringSubmatch(line); m != nil {
		e = checksumEntry{name: m[2], algo: bsdTags[strings.ToUpper(m[1])], hex: strings.ToLower(m[3])}
		if e.algo != "" && len(e.hex) != digestLen[e.algo] {
			e.algo = "" // a malformed line cannot vouch for the image
		}
		return e, true
	}
	// GNU: a leading backslash means the name has \\ and \n escapes.
	escaped := strings.HasPrefix(line, `\`)
	if escaped {
		line = line[1:]
	}
	hexs, rest, found := strings.Cut(line, " ")
	if !found || hexs == "" || rest == "" {
		return e, false
	}
	if _, err := hex.DecodeString(hexs); err != nil {
		return e, false
	}
	name := rest
	if rest[0] == ' ' || rest[0] == '*' { // text or binary mode mark
		name = rest[1:]
	}
	if escaped {
		name = strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(name)
	}
	e = checksumEntry{name: name, hex: strings.ToLower(hexs)}
	for algo, n := range digestLen {
		if len(hexs) == n {
			e.algo = algo
		}
	}
	return e, true
}

// Verify returns a reader that hashes everything read through it; at EOF it compares with d
// and returns a *ChecksumError instead of io.EOF when they differ. A zero Digest verifies
// nothing (passes through). Source names the image in the error.
//
// The comparison happens only at EOF: a consumer that stops early (a tar reader at the
// end-of-archive marker) must drain the rest, e.g. io.Copy(io.Discard, r), to learn
// whether the image was intact.
func Verify(r io.Reader, d Digest, source string) io.Reader {
	if d == (Digest{}) {
		return r
	}
	v := &verifier{r: r, d: d, source: source, h: newHash(d.Algo)}
	if v.h == nil {
		v.err = fmt.Errorf("verifying %s: unsupported checksum algorithm %q", source, d.Algo)
	}
	v.d.Hex = strings.ToLower(d.Hex)
	return v
}

type verifier struct {
	r      io.Reader
	h      hash.Hash
	d      Digest
	source string
	err    error // sticky result once reached
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.d.Hex {
			err = &ChecksumError{Source: v.source, Algo: v.d.Algo, Expected: v.d.Hex, Actual: got}
		}
	}
	if err != nil {
		v.err = err
	}
	return n, err
}
