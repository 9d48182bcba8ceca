package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Fuzz archives are made of 5-byte records, one entry each:
//
//	kind   what the entry is (fuzzKinds)
//	name   2 bytes: bit 0 a leading "/", bits 1-2 the number of components - 1,
//	       then 3 bits per component from fuzzParts
//	target 2 bytes: bits 0-1 how to read the rest: a relative path like name, an
//	       absolute one, one of fuzzSpecial, or a relative path with a trailing "/"
//
// so that names and link targets are drawn from a small alphabet in which "..", "/",
// "." and a few names collide often.
const fuzzRecord = 5

var (
	fuzzKinds = []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo, tar.TypeChar, tar.TypeReg, tar.TypeSymlink}
	fuzzParts = []string{"a", "b", "..", ".", "", "c", "a", "b"}
)

// fuzzSpecial are link targets that point at what must never be touched; "OUTSIDE" and
// "SECRET" stand for the sandbox's absolute paths.
var fuzzSpecial = []string{"OUTSIDE", "SECRET", "/", "../outside", "../../..", "../secret/file", "OUTSIDE/x", "/a/../.."}

func fuzzPath(v uint16) string {
	var b strings.Builder
	if v&1 != 0 {
		b.WriteByte('/')
	}
	n := int(v>>1&3) + 1
	for i := range n {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(fuzzParts[v>>(3+3*i)&7])
	}
	return b.String()
}

func fuzzTarget(v uint16, s sandbox) string {
	switch v & 3 {
	case 0:
		return fuzzPath(v >> 2)
	case 1:
		return "/" + fuzzPath(v>>2)
	case 2:
		t := fuzzSpecial[v>>2&7]
		t = strings.ReplaceAll(t, "OUTSIDE", s.outside)
		return strings.ReplaceAll(t, "SECRET", filepath.Join(s.secret, "file"))
	}
	return fuzzPath(v>>2) + "/"
}

// fuzzArchive turns fuzz input into an archive, dropping entries archive/tar refuses
// to write (it refuses some names ending in "/").
func fuzzArchive(data []byte, s sandbox) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i+fuzzRecord <= len(data); i += fuzzRecord {
		r := data[i : i+fuzzRecord]
		h := &tar.Header{
			Typeflag: fuzzKinds[r[0]&7],
			Name:     fuzzPath(uint16(r[1]) | uint16(r[2])<<8),
			Linkname: fuzzTarget(uint16(r[3])|uint16(r[4])<<8, s),
			Mode:     0o644 | int64(r[0]>>3&1)*0o4000,
			Uid:      int(r[0]>>4&1) * 1000,
			ModTime:  time.Unix(1700000000, 0),
			Format:   tar.FormatPAX,
		}
		var body []byte
		switch h.Typeflag {
		case tar.TypeReg:
			body = []byte("data " + h.Name)
			if r[0]&0x20 != 0 {
				h.PAXRecords = map[string]string{xattrPrefix + "user.fuzz": "1"}
			}
		case tar.TypeChar:
			h.Devmajor, h.Devminor = 1, 3
			if os.Geteuid() != 0 {
				h.Typeflag = tar.TypeFifo
			}
		}
		if h.Typeflag != tar.TypeSymlink && h.Typeflag != tar.TypeLink {
			h.Linkname = ""
		}
		h.Size = int64(len(body))
		if tw.WriteHeader(h) != nil {
			continue // the writer is still usable after a refused header
		}
		tw.Write(body)
	}
	tw.Close()
	return buf.Bytes()
}

// fuzzEncode builds a seed from readable entries: kind, name, target, with the name
// and target given by their alphabet indexes.
func fuzzEncode(entries ...[5]byte) []byte {
	var out []byte
	for _, e := range entries {
		out = append(out, e[:]...)
	}
	return out
}

// nameOf encodes a path of fuzzParts indexes (abs adds a leading "/").
func nameOf(abs bool, parts ...int) (byte, byte) {
	v := uint16(len(parts)-1) << 1
	if abs {
		v |= 1
	}
	for i, p := range parts {
		v |= uint16(p) << (3 + 3*i)
	}
	return byte(v), byte(v >> 8)
}

// specialTarget encodes fuzzSpecial[i]; relTarget a relative path of fuzzParts.
func specialTarget(i int) (byte, byte) { v := uint16(2 | i<<2); return byte(v), byte(v >> 8) }
func relTarget(parts ...int) (byte, byte) {
	lo, hi := nameOf(false, parts...)
	v := (uint16(lo) | uint16(hi)<<8) << 2
	return byte(v), byte(v >> 8)
}

func entry(kind byte, name [2]byte, target [2]byte) [5]byte {
	return [5]byte{kind, name[0], name[1], target[0], target[1]}
}

func two(a, b byte) [2]byte { return [2]byte{a, b} }

// Indexes into fuzzKinds and fuzzParts, for readable seeds.
const (
	kReg, kDir, kSym, kLink, kFifo, kChar = 0, 1, 2, 3, 4, 5
	pA, pB, pDotDot, pDot, pEmpty, pC     = 0, 1, 2, 3, 4, 5
)

func FuzzExtractTar(f *testing.F) {
	// The hostile cases of TestExtractHostile, in the fuzz encoding.
	f.Add(fuzzEncode(entry(kReg, two(nameOf(false, pDotDot, pA)), two(0, 0))))                                                                       // ../a
	f.Add(fuzzEncode(entry(kDir, two(nameOf(false, pA)), two(0, 0)), entry(kReg, two(nameOf(false, pA, pDotDot, pDotDot, pB)), two(0, 0))))          // a/../../b
	f.Add(fuzzEncode(entry(kSym, two(nameOf(false, pA)), two(specialTarget(0))), entry(kReg, two(nameOf(false, pA, pB)), two(0, 0))))                // a -> OUTSIDE, a/b
	f.Add(fuzzEncode(entry(kSym, two(nameOf(false, pA)), two(specialTarget(4))), entry(kReg, two(nameOf(false, pA, pB)), two(0, 0))))                // a -> ../../.., a/b
	f.Add(fuzzEncode(entry(kSym, two(nameOf(false, pA)), two(specialTarget(3))), entry(kFifo, two(nameOf(false, pA, pB)), two(0, 0))))               // a -> ../outside
	f.Add(fuzzEncode(entry(kLink, two(nameOf(false, pA)), two(specialTarget(5)))))                                                                   // hardlink ../secret/file
	f.Add(fuzzEncode(entry(kLink, two(nameOf(false, pA)), two(specialTarget(1)))))                                                                   // hardlink /abs/secret/file
	f.Add(fuzzEncode(entry(kSym, two(nameOf(false, pA)), two(specialTarget(2))), entry(kReg, two(nameOf(false, pA, pA, pB)), two(0, 0))))            // a -> /, a/a/b
	f.Add(fuzzEncode(entry(kSym, two(nameOf(false, pA)), two(specialTarget(1))), entry(kReg, two(nameOf(false, pA)), two(0, 0))))                    // a -> SECRET, then file a
	f.Add(fuzzEncode(entry(kChar, two(nameOf(false, pDotDot, pC)), two(0, 0))))                                                                      // char ../c
	f.Add(fuzzEncode(entry(kSym, two(nameOf(false, pB)), two(relTarget(pA, pDotDot, pDotDot))), entry(kDir, two(nameOf(false, pB, pC)), two(0, 0)))) // b -> a/../.., b/c/
	f.Add(fuzzEncode(entry(kSym, two(nameOf(true, pDot)), two(specialTarget(2)))))                                                                   // /. -> /
	f.Add(fuzzEncode(entry(kDir, two(nameOf(false, pA)), two(0, 0)), entry(kLink, two(nameOf(false, pB)), two(relTarget(pA)))))                      // hardlink to a dir

	// Names that must not appear on the host: every ancestor of the sandbox, plus "/".
	probe := func(s sandbox) map[string]bool {
		seen := map[string]bool{}
		for d := s.dir; ; d = filepath.Dir(d) {
			for _, n := range []string{"a", "b", "c", "x", "outside", "secret"} {
				p := filepath.Join(d, n)
				if _, err := os.Lstat(p); err == nil {
					seen[p] = true
				}
			}
			if d == "/" {
				return seen
			}
		}
	}
	shm := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		shm, _ = os.MkdirTemp("/dev/shm", "FuzzExtractTar-")
		f.Cleanup(func() { os.RemoveAll(shm) })
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 40*fuzzRecord {
			return // longer archives find nothing new and slow the search down
		}
		var s sandbox
		if shm != "" {
			// On tmpfs: thousands of runs a second would otherwise wait on the disk.
			dir, err := os.MkdirTemp(shm, "fuzz-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			s = sandboxIn(t, dir)
		} else {
			s = newSandbox(t)
		}
		before := probe(s)
		archive := fuzzArchive(data, s)
		// A hang is a failure too, and one the fuzzer cannot report on its own.
		watchdog := time.AfterFunc(20*time.Second, func() {
			buf := make([]byte, 1<<20)
			panic("extraction hung:\n" + string(buf[:runtime.Stack(buf, true)]))
		})
		ExtractTar(context.Background(), bytes.NewReader(archive), s.root, ExtractOptions{Sparse: len(data)%2 == 0})
		s.check(t)
		watchdog.Stop()
		for p := range probe(s) {
			if !before[p] && !strings.HasPrefix(p, s.dir+"/") {
				t.Errorf("%s appeared outside the sandbox", p)
			}
		}
	})
}
