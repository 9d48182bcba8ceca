package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/engine"
)

// historyFixture is a history with one record of each kind, 2025-03-01 to 2025-03-05.
func historyFixture() []bootloader.HistoryEntry {
	day := func(d int) time.Time { return time.Date(2025, 3, d, 12, 0, 0, 0, time.UTC) }
	a1 := &bootloader.ImageVersion{ImageName: "Alpha 1", ImageUUID: "a1a1a1a1-0000", Digest: "sha256:0123456789abcdef"}
	a2 := &bootloader.ImageVersion{ImageName: "Alpha 2", Digest: "sha256:fedcba9876543210"}
	b1 := &bootloader.ImageVersion{ImageName: "Beta 1", ImageUUID: "b1b1b1b1-2222-3333"}
	return []bootloader.HistoryEntry{
		{Time: day(1), Node: "n1", Operation: "deploy", To: "alpha", Result: "ok", SpecDigest: "sha256:5bec",
			Images: []bootloader.ImageChange{{Name: "alpha", To: a1}, {Name: "beta", To: b1}}},
		{Time: day(2), Node: "n1", Operation: "switch-default", From: "alpha", To: "beta", Result: "ok", FromImage: a1, ToImage: b1},
		{Time: day(3), Node: "n1", Operation: "reload", From: "alpha", To: "alpha", Result: "ok", Detail: "it boots next on trial (3 tries)",
			FromImage: a1, ToImage: a2, Tries: 3},
		{Time: day(4), Node: "n1", Operation: "reload", From: "beta", To: "beta", Result: "failed", Error: "fetching http://x/b.tar:\n404", FromImage: b1},
		{Time: day(5), Operation: "update", To: "alpha", Result: "ok", SpecDigest: "sha256:5bed",
			Images: []bootloader.ImageChange{{Name: "alpha", From: a2, To: a2}, {Name: "beta", From: b1}, {Name: "gamma", To: &bootloader.ImageVersion{ImageName: "Gamma"}}, {Name: "delta"}}},
	}
}

func TestHistoryTable(t *testing.T) {
	var buf bytes.Buffer
	if err := writeHistoryTable(&buf, 17, historyFixture()); err != nil {
		t.Fatal(err)
	}
	want := `(17 older records dropped to keep the history small)
TIME                  OPERATION       NODE  FROM -> TO                                                                   RESULT
2025-03-01T12:00:00Z  deploy          n1    alpha: Alpha 1 01234567, beta: Beta 1 b1b1b1b1                               ok
2025-03-02T12:00:00Z  switch-default  n1    alpha (Alpha 1 01234567) -> beta (Beta 1 b1b1b1b1)                           ok
2025-03-03T12:00:00Z  reload          n1    alpha: Alpha 1 01234567 -> Alpha 2 fedcba98                                  ok; it boots next on trial (3 tries)
2025-03-04T12:00:00Z  reload          n1    beta: Beta 1 b1b1b1b1 -> -                                                   failed: fetching http://x/b.tar: 404
2025-03-05T12:00:00Z  update          -     alpha: Alpha 2 fedcba98, beta: Beta 1 b1b1b1b1 removed, gamma: Gamma, delta  ok
`
	if got := buf.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	buf.Reset()
	writeHistoryTable(&buf, 0, nil)
	if got := buf.String(); got != "TIME  OPERATION  NODE  FROM -> TO  RESULT\n" {
		t.Errorf("empty table: %q", got)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2025, 3, 10, 8, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"24h", now.Add(-24 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"7d", now.AddDate(0, 0, -7)},
		{"2025-03-01", time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"2025-03-01T12:00:00+02:00", time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)},
	} {
		got, err := parseSince(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"-1h", "yesterday", "2025-13-01", "7days"} {
		if _, err := parseSince(bad, now); err == nil || engine.ExitCode(err) != engine.ExitFailure || !strings.Contains(err.Error(), "--since") {
			t.Errorf("parseSince(%q): err = %v, want a usage error", bad, err)
		}
	}
}

func TestHistoryFilter(t *testing.T) {
	entries := historyFixture()
	ops := func(es []bootloader.HistoryEntry) string {
		var s []string
		for _, e := range es {
			s = append(s, e.Time.Format("02")+" "+e.Operation)
		}
		return strings.Join(s, ", ")
	}
	now := time.Date(2025, 3, 5, 18, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		since, image, want string
	}{
		{"", "", "01 deploy, 02 switch-default, 03 reload, 04 reload, 05 update"},
		{"2025-03-03", "", "03 reload, 04 reload, 05 update"},
		{"2025-03-03T12:00:01Z", "", "04 reload, 05 update"},
		{"30h", "", "04 reload, 05 update"},
		{"", "beta", "01 deploy, 02 switch-default, 04 reload, 05 update"},
		{"", "Alpha 2", "03 reload, 05 update"},
		{"", "gamma", "05 update"},
		{"", "Beta 1", "01 deploy, 02 switch-default, 04 reload, 05 update"},
		{"2025-03-02", "alpha", "02 switch-default, 03 reload, 05 update"},
		{"", "epsilon", ""},
	} {
		f, err := newHistoryFilter(tc.since, tc.image, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := ops(f.apply(entries)); got != tc.want {
			t.Errorf("--since %q --image %q: %s; want %s", tc.since, tc.image, got, tc.want)
		}
	}
}

// TestHistoryCLI: history reads a rotated file, prints the dropped count, filters, and
// --json has every field.
func TestHistoryCLI(t *testing.T) {
	dir := bootDir(t)
	var data []byte
	data = append(data, "{\"dropped\":42}\n"...)
	for _, e := range historyFixture() {
		line, _ := json.Marshal(e)
		data = append(append(data, line...), '\n')
	}
	// An old line, whose result held the error.
	data = append(data, `{"time":"2025-03-06T12:00:00Z","operation":"switch-default --once","from":"alpha","to":"beta","result":"switching default: power cut"}`+"\n"...)
	os.WriteFile(filepath.Join(dir, bootloader.HistoryPath), data, 0o644)

	r := runCLI(t, "", "history", "--boot-dir", dir, "--since", "2025-03-04", "--image", "beta")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 5 || !strings.HasPrefix(lines[0], "(42 older records dropped") ||
		!strings.HasSuffix(lines[4], "failed: switching default: power cut") {
		t.Errorf("history --since --image: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = runCLI(t, "", "history", "--boot-dir", dir, "--json", "--image", "gamma")
	var got historyJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 || got.Dropped != 42 || len(got.Entries) != 1 {
		t.Fatalf("history --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if e := got.Entries[0]; e.SpecDigest != "sha256:5bed" || len(e.Images) != 4 || e.Images[1].To != nil || e.Images[2].From != nil {
		t.Errorf("history --json entry: %+v", e)
	}
	for _, field := range []string{`"dropped": 42`, `"spec_digest"`, `"images"`, `"operation": "update"`} {
		if !strings.Contains(r.stdout, field) {
			t.Errorf("history --json lacks %s:\n%s", field, r.stdout)
		}
	}
	r = runCLI(t, "", "history", "--boot-dir", dir, "--json", "--image", "epsilon")
	if r.code != 0 || !strings.Contains(r.stdout, `"entries": []`) {
		t.Errorf("no match: exit %d\n%s", r.code, r.stdout)
	}
	r = runCLI(t, "", "history", "--boot-dir", dir, "--since", "last week")
	if r.code != engine.ExitFailure || !strings.Contains(r.stderr, `--since "last week"`) {
		t.Errorf("bad --since: exit %d\n%s", r.code, r.stderr)
	}
}
