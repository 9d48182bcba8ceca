package bootloader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/confine"
)

func TestHistoryAppendRead(t *testing.T) {
	dir := t.TempDir()
	if got, err := ReadHistory(dir); err != nil || got.Entries != nil || got.Dropped != 0 {
		t.Fatalf("no file: %v, %v", got, err)
	}
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	v1 := &ImageVersion{ImageName: "Ubuntu 24.04", ImageUUID: "u-1", Digest: "sha256:aa"}
	want := []HistoryEntry{
		{Time: t0, Node: "n1", Operation: "deploy", To: "centos", Result: ResultOK, SpecDigest: "sha256:01",
			Images: []ImageChange{{Name: "centos", To: v1}}},
		{Time: t0.Add(time.Minute), Node: "n1", Operation: "switch-default", From: "centos", To: "ubuntu", Result: ResultOK,
			FromImage: v1, ToImage: &ImageVersion{ImageName: "Ubuntu 22.04"}},
		{Time: t0.Add(2 * time.Minute), Node: "n1", Operation: "switch-default --once", From: "ubuntu", To: "fedora", Result: ResultFailed,
			Error: `boot entry "fedora": unknown boot entry; valid: 0 (centos)`},
	}
	if err := AppendHistory(dir, want[0]); err != nil {
		t.Fatal(err)
	}
	// Several entries go in one append.
	if err := AppendHistory(dir, want[1:]...); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Entries, want) || got.Dropped != 0 {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	data, _ := os.ReadFile(filepath.Join(dir, HistoryPath))
	if n := strings.Count(string(data), "\n"); n != 3 || !strings.HasSuffix(string(data), "\n") {
		t.Errorf("want three newline-terminated lines:\n%s", data)
	}

	// A zero time, node and result are filled in; an error makes the result "failed".
	SetNodeName("rack1-node7")
	defer SetNodeName("")
	if err := AppendHistory(dir, HistoryEntry{Operation: "deploy"}, HistoryEntry{Operation: "reload", Error: "boom"}); err != nil {
		t.Fatal(err)
	}
	got, _ = ReadHistory(dir)
	e := got.Entries
	if len(e) != 5 || time.Since(e[3].Time) > time.Minute || e[3].Node != "rack1-node7" || e[3].Result != ResultOK || e[4].Result != ResultFailed {
		t.Errorf("not filled in: %+v", e)
	}
}

// TestNodeName: without SetNodeName the node is the kernel's hostname.
func TestNodeName(t *testing.T) {
	SetNodeName("")
	h, err := os.Hostname()
	if err != nil || h == "" {
		t.Skip("no hostname here")
	}
	if got := NodeName(); got != h {
		t.Errorf("NodeName() = %q, want the hostname %q", got, h)
	}
	SetNodeName("n2")
	defer SetNodeName("")
	if got := NodeName(); got != "n2" {
		t.Errorf("NodeName() = %q after SetNodeName", got)
	}
}

// TestSpecDigest: the digest is the same for the loaded spec's compact JSON and the
// record's indented copy, and the history takes the record's when an entry has none.
func TestSpecDigest(t *testing.T) {
	// sha256 of {"a":1}, as sha256sum prints it.
	const want = "sha256:015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
	if got := SpecDigest([]byte(`{"a":1}`)); got != want {
		t.Errorf("SpecDigest = %s, want %s", got, want)
	}
	if got := SpecDigest([]byte("{\n  \"a\": 1\n}\n")); got != want {
		t.Errorf("indented: %s, want %s", got, want)
	}
	if got := SpecDigest(nil); got != "" {
		t.Errorf("no spec: %q", got)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, RecordPath), []byte("{\n  \"version\": 1,\n  \"spec\": {\n    \"a\": 1\n  }\n}\n"), 0o644)
	if err := AppendHistory(dir, HistoryEntry{Operation: "switch-default"}, HistoryEntry{Operation: "update", SpecDigest: "sha256:02"}); err != nil {
		t.Fatal(err)
	}
	got, _ := ReadHistory(dir)
	if len(got.Entries) != 2 || got.Entries[0].SpecDigest != want || got.Entries[1].SpecDigest != "sha256:02" {
		t.Errorf("spec digests: %+v", got.Entries)
	}
}

// TestHistoryLegacyLines: lines written before result was only ok or failed still read, the
// error text in Error and the sentences in Detail.
func TestHistoryLegacyLines(t *testing.T) {
	dir := t.TempDir()
	old := `{"time":"2025-03-01T12:00:00Z","operation":"deploy","to":"ubuntu","result":"ok"}
{"time":"2025-03-01T12:01:00Z","operation":"switch-default","from":"ubuntu","to":"centos","result":"unchanged: already the default"}
{"time":"2025-03-01T12:02:00Z","operation":"switch-default","from":"ubuntu","to":"centos","result":"ok; grubenv rewritten: bad"}
{"time":"2025-03-01T12:03:00Z","operation":"switch-default","from":"ubuntu","to":"centos","result":"switching default: power cut"}
{"time":"2025-03-01T12:04:00Z","operation":"reload","from":"a","to":"b","result":"default moved from a to b while a is reloaded"}
{"time":"2025-03-01T12:05:00Z","operation":"reload","from":"a","to":"a","result":"ok; it boots next on trial (3 tries)","from_image":{"image_name":"A 1"},"to_image":{"image_name":"A 2","digest":"sha256:bb"}}
{"time":"2025-03-01T12:06:00Z","operation":"rollback","from":"a","to":"b","result":"trial of a failed after 3 boots; b boots now"}
{"time":"2025-03-01T12:07:00Z","operation":"reload-live","from":"a","to":"a","result":"3 added (1.0 MiB), 0 changed (0 B)"}
{"time":"2025-03-01T12:08:00Z","operation":"reload","from":"a","to":"a","result":"fetching: 404"}
`
	os.WriteFile(filepath.Join(dir, HistoryPath), []byte(old), 0o644)
	got, err := ReadHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := [][3]string{
		{"ok", "", ""}, {"ok", "unchanged: already the default", ""}, {"ok", "grubenv rewritten: bad", ""},
		{"failed", "", "switching default: power cut"}, {"ok", "default moved from a to b while a is reloaded", ""},
		{"ok", "it boots next on trial (3 tries)", ""}, {"ok", "trial of a failed after 3 boots; b boots now", ""},
		{"ok", "3 added (1.0 MiB), 0 changed (0 B)", ""}, {"failed", "", "fetching: 404"},
	}
	if len(got.Entries) != len(want) {
		t.Fatalf("entries: %+v", got.Entries)
	}
	for i, w := range want {
		e := got.Entries[i]
		if e.Result != w[0] || e.Detail != w[1] || e.Error != w[2] {
			t.Errorf("line %d: result %q detail %q error %q, want %q", i+1, e.Result, e.Detail, e.Error, w)
		}
	}
	if e := got.Entries[5]; e.ToImage == nil || e.ToImage.Digest != "sha256:bb" || e.FromImage.ImageName != "A 1" {
		t.Errorf("images of an old reload line: %+v", e)
	}
}

func TestHistoryTornLastLine(t *testing.T) {
	dir := t.TempDir()
	e1 := HistoryEntry{Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), Node: "n", Operation: "deploy", To: "centos", Result: "ok"}
	if err := AppendHistory(dir, e1); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, HistoryPath)
	tear(t, p, `{"time":"2025-03-01T12:01:00Z","operation":"switch-def`)

	got, err := ReadHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Entries, []HistoryEntry{e1}) {
		t.Errorf("torn line not skipped: %+v", got)
	}

	// The next append must not be glued onto the fragment.
	e2 := HistoryEntry{Time: e1.Time.Add(2 * time.Minute), Node: "n", Operation: "switch-default", From: "centos", To: "ubuntu", Result: "ok"}
	if err := AppendHistory(dir, e2); err != nil {
		t.Fatal(err)
	}
	got, err = ReadHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Entries, []HistoryEntry{e1, e2}) {
		t.Errorf("after append: %+v", got)
	}
}

// tear appends a fragment without a newline to the file p: a power cut mid-append.
func tear(t *testing.T, p, fragment string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(fragment); err != nil {
		t.Fatal(err)
	}
}

func TestHistoryCorruptMiddleLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, HistoryPath)
	if err := os.WriteFile(p, []byte("{\"operation\":\"deploy\",\"result\":\"ok\",\"time\":\"2025-03-01T12:00:00Z\"}\nnot json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadHistory(dir)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("err = %v, want one naming %s line 2", err, p)
	}
}

// seq is the sequence number rotation tests put in an entry's Detail.
func seq(e HistoryEntry) int {
	var n int
	fmt.Sscanf(e.Detail, "n=%d", &n)
	return n
}

// checkRotated checks that the history in dir holds the newest entries of total appended
// ones, numbered 0 to total-1, in order, with the others counted as dropped, within the
// bounds.
func checkRotated(t *testing.T, dir string, total int) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, HistoryPath))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > HistoryMaxBytes {
		t.Fatalf("after %d appends the file is %d bytes, over %d", total, fi.Size(), HistoryMaxBytes)
	}
	log, err := ReadHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := len(log.Entries)
	if n > HistoryMaxEntries || n == 0 || log.Dropped+int64(n) != int64(total) {
		t.Fatalf("after %d appends: %d entries, %d dropped", total, n, log.Dropped)
	}
	for i, e := range log.Entries {
		if want := int(log.Dropped) + i; seq(e) != want {
			t.Fatalf("after %d appends: entry %d is n=%d, want n=%d", total, i, seq(e), want)
		}
	}
}

// TestHistoryRotation: 5000 appends keep the file within its bounds, the newest entries in
// order, and the exact count of the dropped ones; big entries hit the byte bound first.
func TestHistoryRotation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		total int
		pad   int
	}{
		{"small entries", 5000, 0},
		{"big entries", 1000, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() {
				// Each append is an fsync; a third of the series still rotates several times.
				tc.total /= 3
			}
			dir := t.TempDir()
			pad := strings.Repeat("x", tc.pad)
			start := time.Now()
			for i := range tc.total {
				e := HistoryEntry{Operation: "switch-default", From: "a", To: "b", Detail: fmt.Sprintf("n=%d %s", i, pad)}
				if err := AppendHistory(dir, e); err != nil {
					t.Fatal(err)
				}
				fi, err := os.Stat(filepath.Join(dir, HistoryPath))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() > HistoryMaxBytes {
					t.Fatalf("after %d appends: %d bytes", i+1, fi.Size())
				}
				if i%997 == 0 || i == tc.total-1 {
					checkRotated(t, dir, i+1)
				}
			}
			log, _ := ReadHistory(dir)
			t.Logf("%d appends in %v: %d kept, %d dropped", tc.total, time.Since(start).Round(time.Millisecond), len(log.Entries), log.Dropped)
			if log.Dropped == 0 {
				t.Error("nothing was dropped")
			}
		})
	}
}

// TestHistoryRotationTornTail: a rotation over a torn last line drops the fragment without
// counting it, and the header is not mistaken for an entry.
func TestHistoryRotationTornTail(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, HistoryPath)
	var data []byte
	for i := range HistoryMaxEntries {
		data = fmt.Appendf(data, `{"time":"2025-03-01T12:00:00Z","operation":"deploy","result":"ok","detail":"n=%d"}`+"\n", i)
	}
	os.WriteFile(p, data, 0o644)
	tear(t, p, `{"time":"2025-03-01T12:01:00Z","operation":"swi`)
	if err := AppendHistory(dir, HistoryEntry{Operation: "deploy", Detail: fmt.Sprintf("n=%d", HistoryMaxEntries)}); err != nil {
		t.Fatal(err)
	}
	checkRotated(t, dir, HistoryMaxEntries+1)
	after, _ := os.ReadFile(p)
	if !bytes.HasPrefix(after, []byte(`{"dropped":`)) || bytes.Contains(after, []byte(`"swi`)) {
		t.Errorf("rotated file starts %.80q", after)
	}
}

// TestHistoryRotationPowerCut: a power cut at any step of a rotation leaves the old file
// whole, and the next append rotates it.
func TestHistoryRotationPowerCut(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, HistoryPath)
	var data []byte
	for i := range HistoryMaxEntries {
		data = fmt.Appendf(data, `{"time":"2025-03-01T12:00:00Z","operation":"deploy","result":"ok","detail":"n=%d"}`+"\n", i)
	}
	os.WriteFile(p, data, 0o600)
	cut := errors.New("power cut")
	for _, step := range []string{"create", "write", "fsync", "rename"} {
		d, err := confine.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		hook := func(s string) error {
			if s == step {
				return cut
			}
			return nil
		}
		err = appendHistory(d, hook, HistoryEntry{Operation: "deploy", Detail: fmt.Sprintf("n=%d", HistoryMaxEntries)})
		d.Close()
		if !errors.Is(err, cut) {
			t.Fatalf("cut at %s: err = %v", step, err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
			t.Fatalf("cut at %s: the history changed", step)
		}
	}
	if err := AppendHistory(dir, HistoryEntry{Operation: "deploy", Detail: fmt.Sprintf("n=%d", HistoryMaxEntries)}); err != nil {
		t.Fatal(err)
	}
	checkRotated(t, dir, HistoryMaxEntries+1)
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("rotation changed the mode to %v", fi.Mode().Perm())
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*"+tempMarker+"*")); len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}
}

func TestCutText(t *testing.T) {
	long := strings.Repeat("é", maxHistoryText)
	got := cutText(long)
	if len(got) > maxHistoryText || !strings.HasSuffix(got, " [cut]") || !strings.HasPrefix(got, "é") || strings.ContainsRune(got, '\uFFFD') {
		t.Errorf("cut to %d bytes: %.20q...%q", len(got), got, got[len(got)-10:])
	}
	if cutText("short") != "short" {
		t.Error("a short text was cut")
	}
}

// TestImageChanges: images kept, replaced, added and removed between two boot infos.
func TestImageChanges(t *testing.T) {
	el := func(os, name, digest string) Element { return Element{OSID: os, ImageName: name, Digest: digest} }
	before := &BootInfo{Elements: []Element{el("alpha", "A 1", "sha256:a1"), el("beta", "B 1", "sha256:b1"), el("gamma", "G 1", "")}}
	after := &BootInfo{Elements: []Element{el("beta", "B 2", "sha256:b2"), el("alpha", "A 1", "sha256:a1"), el("delta", "D 1", "sha256:d1")}}
	v := func(name, digest string) *ImageVersion { return &ImageVersion{ImageName: name, Digest: digest} }
	want := []ImageChange{
		{Name: "beta", From: v("B 1", "sha256:b1"), To: v("B 2", "sha256:b2")},
		{Name: "alpha", From: v("A 1", "sha256:a1"), To: v("A 1", "sha256:a1")},
		{Name: "delta", To: v("D 1", "sha256:d1")},
		{Name: "gamma", From: v("G 1", "")},
	}
	if got := ImageChanges(before, after); !reflect.DeepEqual(got, want) {
		t.Errorf("ImageChanges = %+v\nwant %+v", got, want)
	}
	if got := ImageChanges(nil, &BootInfo{Elements: []Element{{OSID: "x"}}}); !reflect.DeepEqual(got, []ImageChange{{Name: "x"}}) {
		t.Errorf("first deploy of an image without name or digest: %+v", got)
	}
}

// TestFailReloadRecord: a failed reload is one record with its operation, "failed", the
// error apart, and the image it was replacing.
func TestFailReloadRecord(t *testing.T) {
	dir := writeBootDir(t, switchBootInfo(), defaultEnv())
	if err := FailReload(context.Background(), dir, 1, "reload-live", errors.New("syncing: no space left")); err != nil {
		t.Fatal(err)
	}
	log, err := ReadHistory(dir)
	if err != nil || len(log.Entries) != 1 {
		t.Fatalf("history: %v %+v", err, log)
	}
	e := log.Entries[0]
	if e.Operation != "reload-live" || e.Result != ResultFailed || e.Error != "syncing: no space left" || e.Detail != "" ||
		e.From != "ubuntu" || e.FromImage == nil || e.FromImage.ImageName != "ubuntu-22.04" {
		t.Errorf("record %+v", e)
	}
}
