package deploy

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

func sha256Hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
func sha512Hex(b []byte) string { s := sha512.Sum512(b); return hex.EncodeToString(s[:]) }
func md5Hex(b []byte) string    { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

func TestResolveDigestInline(t *testing.T) {
	h256 := sha256Hex([]byte("a"))
	h512 := sha512Hex([]byte("a"))
	h5 := md5Hex([]byte("a"))
	for _, tc := range []struct {
		in      string
		want    Digest
		wantErr string
	}{
		{"", Digest{}, ""},
		{"  ", Digest{}, ""},
		{"sha256:" + h256, Digest{"sha256", h256}, ""},
		{"SHA256:" + strings.ToUpper(h256), Digest{"sha256", h256}, ""},
		{"sha512:" + h512, Digest{"sha512", h512}, ""},
		{"md5:" + h5, Digest{"md5", h5}, ""},
		{"sha256:" + h256[1:], Digest{}, "has 64 hex digits, not 63"},
		{"sha256:" + h512, Digest{}, "has 64 hex digits, not 128"},
		{"md5:" + h256, Digest{}, "has 32 hex digits, not 64"},
		{"sha256:" + strings.Repeat("g", 64), Digest{}, "not hexadecimal"},
		{"crc32:deadbeef", Digest{}, "want sha256:<hex>"},
		{h256, Digest{}, "want sha256:<hex>"},
	} {
		got, err := quickFetcher(0).ResolveDigest(context.Background(), tc.in, "http://h/img.tar")
		switch {
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("ResolveDigest(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ResolveDigest(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestResolveDigestFromFile(t *testing.T) {
	img := []byte("centos image")
	other := []byte("ubuntu image")
	gnu := fmt.Sprintf("# made by sha256sum\n%s  ubuntu.tar.gz\n%s *centos.tar.gz\r\n%s  centos.tar.gz.sig\n",
		sha256Hex(other), sha256Hex(img), sha256Hex([]byte("sig")))
	bsd := fmt.Sprintf("SHA256 (ubuntu.tar.gz) = %s\nMD5 (centos.tar.gz) = %s\nSHA512 (centos.tar.gz) = %s\nSHA1 (centos.tar.gz) = %s\n",
		sha256Hex(other), md5Hex(img), sha512Hex(img), strings.Repeat("a", 40))
	md5s := fmt.Sprintf("%s  ./centos.tar.gz\n%s  ubuntu.tar.gz\n", md5Hex(img), md5Hex(other))
	subdir := fmt.Sprintf("%s  el9/centos.tar.gz\n%s  jammy/ubuntu.tar.gz\n", sha256Hex(img), sha256Hex(other))
	ambiguous := fmt.Sprintf("%s  el9/centos.tar.gz\n%s  el8/centos.tar.gz\n", sha256Hex(img), sha256Hex(other))
	sha1 := fmt.Sprintf("%s  centos.tar.gz\n", strings.Repeat("a", 40))
	escaped := fmt.Sprintf("\\%s  we\\\\ird.img\n", sha256Hex(img))
	files := map[string]string{
		"/SHA256SUMS": gnu, "/CHECKSUM": bsd, "/MD5SUMS": md5s, "/subdir": subdir,
		"/ambiguous": ambiguous, "/SHA1SUMS": sha1, "/escaped": escaped,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	defer srv.Close()
	local := filepath.Join(t.TempDir(), "SHA256SUMS")
	if err := os.WriteFile(local, []byte(gnu), 0o644); err != nil {
		t.Fatal(err)
	}

	const image = "https://mirror.example/images/centos.tar.gz?token=abc#frag"
	for _, tc := range []struct {
		checksum, image string
		want            Digest
		wantErr         []string
	}{
		{srv.URL + "/SHA256SUMS", image, Digest{"sha256", sha256Hex(img)}, nil},
		{"file://" + local, "/srv/images/centos.tar.gz", Digest{"sha256", sha256Hex(img)}, nil},
		{local, "images/centos.tar.gz", Digest{"sha256", sha256Hex(img)}, nil},
		{"SHA256SUMS", image, Digest{}, []string{"the path (with a /) of a checksum file"}},
		{srv.URL + "/SHA256SUMS", "file:///srv/ubuntu.tar.gz", Digest{"sha256", sha256Hex(other)}, nil},
		{srv.URL + "/CHECKSUM", image, Digest{"sha512", sha512Hex(img)}, nil},
		{srv.URL + "/MD5SUMS", image, Digest{"md5", md5Hex(img)}, nil},
		{srv.URL + "/subdir", image, Digest{"sha256", sha256Hex(img)}, nil},
		{srv.URL + "/escaped", "http://h/we%5Cird.img", Digest{"sha256", sha256Hex(img)}, nil},
		{srv.URL + "/SHA256SUMS", "http://h/debian.tar.gz", Digest{}, []string{srv.URL + "/SHA256SUMS", `no entry for "debian.tar.gz"`}},
		{srv.URL + "/ambiguous", image, Digest{}, []string{"several paths"}},
		{srv.URL + "/SHA1SUMS", image, Digest{}, []string{"40-digit"}},
		{srv.URL + "/missing", image, Digest{}, []string{srv.URL + "/missing", "404", "centos.tar.gz"}},
		{srv.URL + "/SHA256SUMS", "http://h/", Digest{}, []string{"no file name"}},
	} {
		got, err := quickFetcher(0).ResolveDigest(context.Background(), tc.checksum, tc.image)
		if tc.wantErr == nil {
			if err != nil || got != tc.want {
				t.Errorf("ResolveDigest(%s, %s) = %v, %v; want %v", tc.checksum, tc.image, got, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ResolveDigest(%s, %s) = %v, want an error", tc.checksum, tc.image, got)
			continue
		}
		for _, want := range tc.wantErr {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ResolveDigest(%s, %s) error %q does not contain %q", tc.checksum, tc.image, err, want)
			}
		}
	}
}

func TestVerify(t *testing.T) {
	data := testData(100_000)
	for _, tc := range []struct {
		name string
		d    Digest
		in   io.Reader
		bad  bool
	}{
		{"sha256 right", Digest{"sha256", sha256Hex(data)}, bytes.NewReader(data), false},
		{"sha256 upper-case hex", Digest{"sha256", strings.ToUpper(sha256Hex(data))}, bytes.NewReader(data), false},
		{"sha512 right", Digest{"sha512", sha512Hex(data)}, bytes.NewReader(data), false},
		{"md5 right", Digest{"md5", md5Hex(data)}, iotest.OneByteReader(bytes.NewReader(data)), false},
		{"sha256 wrong", Digest{"sha256", sha256Hex([]byte("x"))}, bytes.NewReader(data), true},
		{"sha512 wrong", Digest{"sha512", sha512Hex([]byte("x"))}, bytes.NewReader(data), true},
		{"md5 wrong", Digest{"md5", md5Hex([]byte("x"))}, bytes.NewReader(data), true},
		{"EOF early", Digest{"sha256", sha256Hex(data)}, bytes.NewReader(data[:5000]), true},
		{"EOF with the last bytes", Digest{"sha256", sha256Hex(data)}, iotest.DataErrReader(bytes.NewReader(data)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := io.ReadAll(Verify(tc.in, tc.d, "http://h/img"))
			if !tc.bad {
				if err != nil || len(got) != len(data) {
					t.Fatalf("ReadAll = %d bytes, %v", len(got), err)
				}
				return
			}
			var ce *ChecksumError
			if !errors.As(err, &ce) || !errors.Is(err, ErrChecksum) {
				t.Fatalf("error %v is not a *ChecksumError matching ErrChecksum", err)
			}
			if ce.Expected != tc.d.Hex || ce.Algo != tc.d.Algo || ce.Source != "http://h/img" || len(ce.Actual) != len(ce.Expected) {
				t.Errorf("ChecksumError = %+v", ce)
			}
			want := fmt.Sprintf("checksum mismatch for http://h/img: %s expected %s, got %s", tc.d.Algo, tc.d.Hex, ce.Actual)
			if err.Error() != want {
				t.Errorf("Error() = %q, want %q", err, want)
			}
		})
	}
}

func TestVerifyPassesThrough(t *testing.T) {
	r := strings.NewReader("x")
	if Verify(r, Digest{}, "img") != io.Reader(r) {
		t.Error("a zero Digest does not return the reader itself")
	}
	_, err := io.ReadAll(Verify(r, Digest{Algo: "sha1", Hex: "00"}, "img"))
	if err == nil || !strings.Contains(err.Error(), `unsupported checksum algorithm "sha1"`) {
		t.Errorf("unknown algorithm: error %v", err)
	}
}

func TestVerifyKeepsReadErrors(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom))
	_, err := io.ReadAll(Verify(r, Digest{"sha256", sha256Hex([]byte("abc"))}, "img"))
	if !errors.Is(err, boom) {
		t.Errorf("error %v, want the reader's own", err)
	}
}
