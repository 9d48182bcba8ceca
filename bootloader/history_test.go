package bootloader

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHistoryAppendRead(t *testing.T) {
	dir := t.TempDir()
	if got, err := ReadHistory(dir); err != nil || got != nil {
		t.Fatalf("no file: %v, %v", got, err)
	}
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	want := []HistoryEntry{
		{Time: t0, Operation: "deploy", To: "centos", Result: "ok"},
		{Time: t0.Add(time.Minute), Operation: "switch-default", From: "centos", To: "ubuntu", Result: "ok"},
		{Time: t0.Add(2 * time.Minute), Operation: "switch-default --once", From: "ubuntu", To: "fedora",
			Result: `boot entry "fedora": unknown boot entry; valid: 0 (centos)`},
	}
	for _, e := range want {
		if err := AppendHistory(dir, e); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	data, _ := os.ReadFile(filepath.Join(dir, HistoryPath))
	if n := strings.Count(string(data), "\n"); n != 3 || !strings.HasSuffix(string(data), "\n") {
		t.Errorf("want three newline-terminated lines:\n%s", data)
	}

	// A zero time is filled in.
	if err := AppendHistory(dir, HistoryEntry{Operation: "deploy", Result: "ok"}); err != nil {
		t.Fatal(err)
	}
	got, _ = ReadHistory(dir)
	if len(got) != 4 || time.Since(got[3].Time) > time.Minute {
		t.Errorf("zero time not set to now: %+v", got)
	}
}

func TestHistoryTornLastLine(t *testing.T) {
	dir := t.TempDir()
	e1 := HistoryEntry{Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), Operation: "deploy", To: "centos", Result: "ok"}
	if err := AppendHistory(dir, e1); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, HistoryPath)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A power cut in the middle of the second append.
	if _, err := f.WriteString(`{"time":"2025-03-01T12:01:00Z","operation":"switch-def`); err != nil {
		t.Fatal(err)
	}
	f.Close()

	got, err := ReadHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []HistoryEntry{e1}) {
		t.Errorf("torn line not skipped: %+v", got)
	}

	// The next append must not be glued onto the fragment.
	e2 := HistoryEntry{Time: e1.Time.Add(2 * time.Minute), Operation: "switch-default", From: "centos", To: "ubuntu", Result: "ok"}
	if err := AppendHistory(dir, e2); err != nil {
		t.Fatal(err)
	}
	got, err = ReadHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []HistoryEntry{e1, e2}) {
		t.Errorf("after append: %+v", got)
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
