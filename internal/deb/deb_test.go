package deb

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/deb/debtest"
)

func TestArReader(t *testing.T) {
	for _, gnu := range []bool{false, true} {
		members := []debtest.Member{
			{Name: "debian-binary", Data: []byte("2.0\n")},
			{Name: "odd", Data: []byte("abc")}, // padded to even
			{Name: "empty"},
			{Name: "data.tar.xz", Data: []byte("payload")},
		}
		ar, err := newArReader(bytes.NewReader(debtest.Ar(t, gnu, members...)))
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range members {
			name, r, err := ar.next()
			if err != nil {
				t.Fatalf("gnu=%v member %d: %v", gnu, i, err)
			}
			if name != want.Name {
				t.Errorf("gnu=%v member %d: name %q, want %q", gnu, i, name, want.Name)
			}
			// Leave the odd member unread: next must skip the rest and the padding.
			if want.Name == "odd" {
				continue
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, want.Data) {
				t.Errorf("gnu=%v member %s: %q, %v; want %q", gnu, name, got, err, want.Data)
			}
		}
		if _, _, err := ar.next(); !errors.Is(err, io.EOF) {
			t.Errorf("gnu=%v after the last member: %v, want io.EOF", gnu, err)
		}
	}
}

func TestArReaderErrors(t *testing.T) {
	good := debtest.Ar(t, false, debtest.Member{Name: "debian-binary", Data: []byte("2.0\n")}, debtest.Member{Name: "data.tar", Data: []byte("0123456789")})
	if _, err := newArReader(strings.NewReader("PK\x03\x04 not ar")); err == nil {
		t.Error("a zip file was taken for ar")
	}
	// Cut inside the second member's data: reading it must fail, not end cleanly.
	ar, err := newArReader(bytes.NewReader(good[:len(good)-3]))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ar.next(); err != nil {
		t.Fatal(err)
	}
	_, r, err := ar.next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading a truncated member: %v, want io.ErrUnexpectedEOF", err)
	}
	// Skipping the truncated member unread must fail the same way.
	ar, err = newArReader(bytes.NewReader(good[:len(good)-3]))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, _, err := ar.next(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := ar.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("skipping a truncated member: %v, want io.ErrUnexpectedEOF", err)
	}
	// Cut inside a header.
	ar, err = newArReader(bytes.NewReader(good[:len(arMagic)+30]))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ar.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated header: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestWalkErrors(t *testing.T) {
	dir := t.TempDir()
	noData := debtest.WriteTemp(t, dir, "n.deb", debtest.Ar(t, false, debtest.Member{Name: "debian-binary", Data: []byte("2.0\n")}))
	bz := debtest.WriteTemp(t, dir, "z.deb", debtest.Ar(t, false, debtest.Member{Name: "data.tar.bz2", Data: []byte("BZh")}))
	badXz := debtest.WriteTemp(t, dir, "x.deb", debtest.Ar(t, false, debtest.Member{Name: "data.tar.xz", Data: []byte("not xz at all")}))
	nop := func(string, *tar.Header, io.Reader) error { return nil }
	for p, want := range map[string]string{noData: "no data.tar", bz: "unsupported compression", badXz: "data.tar.xz"} {
		err := Walk(context.Background(), p, nop)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming the file and containing %q", filepath.Base(p), err, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ok := debtest.WriteTemp(t, dir, "ok.deb", debtest.Deb(t, "xz", debtest.TarFile{Name: "./bin/busybox", Data: "bb"}))
	if err := Walk(ctx, ok, nop); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

func TestExtractFile(t *testing.T) {
	dir := t.TempDir()
	p := debtest.WriteTemp(t, dir, "b.deb", debtest.Deb(t, "xz",
		debtest.TarFile{Name: "./"}, debtest.TarFile{Name: "./bin/"}, debtest.TarFile{Name: "./bin/busybox", Data: "\x7fELF busybox"},
		debtest.TarFile{Name: "./bin/sh", Link: "busybox"}))
	dst := filepath.Join(dir, "busybox")
	if err := ExtractFile(context.Background(), p, "bin/busybox", dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := debtest.ReadString(t, dst); got != "\x7fELF busybox" {
		t.Errorf("busybox = %q", got)
	}
	// A symlink is not the file asked for.
	if err := ExtractFile(context.Background(), p, "bin/sh", dst, 0o755); err == nil || !strings.Contains(err.Error(), "has no bin/sh") {
		t.Errorf("extracting a symlink: %v", err)
	}
}

// Walk stops at ErrStop without reading further and without an error.
func TestWalkStop(t *testing.T) {
	p := debtest.WriteTemp(t, t.TempDir(), "k.deb", debtest.Deb(t, "zst",
		debtest.TarFile{Name: "./a", Data: "1"}, debtest.TarFile{Name: "./b", Data: "2"}, debtest.TarFile{Name: "./c", Data: "3"}))
	var seen []string
	err := Walk(context.Background(), p, func(name string, _ *tar.Header, _ io.Reader) error {
		seen = append(seen, name)
		if name == "b" {
			return ErrStop
		}
		return nil
	})
	if err != nil || strings.Join(seen, ",") != "a,b" {
		t.Errorf("walk saw %q, %v; want a,b and nil", seen, err)
	}
}
