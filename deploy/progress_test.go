package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// pacedReader returns chunk bytes per Read and moves the clock on by step, as if the
// bytes took that long to arrive; it ends after total bytes.
type pacedReader struct {
	clock       *fakeClock
	chunk, left int64
	step        time.Duration
}

func (r *pacedReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(r.chunk, r.left, int64(len(p)))
	r.left -= n
	r.clock.t = r.clock.t.Add(r.step)
	return int(n), nil
}

func newTestProgress(w io.Writer, log *slog.Logger, total int64, tty bool, interval time.Duration) (*Progress, *fakeClock) {
	c := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	return newProgress(w, log, "centos", total, tty, interval, c.now), c
}

// readN reads n chunks through p's reader.
func readN(t *testing.T, r io.Reader, n int, chunk int) {
	t.Helper()
	buf := make([]byte, chunk)
	for range n {
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProgressTerminal(t *testing.T) {
	var out bytes.Buffer
	total := int64(34 * (1 << 30) / 10)
	p, clock := newTestProgress(&out, nil, total, true, 0)
	// 11 MB every 100ms: 110 MB/s.
	src := &pacedReader{clock: clock, chunk: 11e6, left: total, step: 100 * time.Millisecond}
	readN(t, p.Reader(src), 118, 11e6)

	s := out.String()
	if strings.Contains(s, "\n") {
		t.Errorf("a status line ended with a newline: %q", s)
	}
	lines := strings.Split(s, "\r")[1:]
	if len(lines) != 59 {
		t.Errorf("%d redraws for 118 reads 100ms apart, want 59 (one per 200ms)", len(lines))
	}
	want := "centos  1.2 GiB / 3.4 GiB  35%  110 MB/s  ETA 0:22"
	if got := lines[len(lines)-1]; strings.TrimRight(got, " ") != want {
		t.Errorf("last line %q, want %q", got, want)
	}

	out.Reset()
	p.Done(nil)
	got := out.String()
	want = "\rcentos  1.2 GiB  done in 0:12  110 MB/s"
	if !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "\n") || len(got) != len(strings.TrimRight(lines[len(lines)-1], " "))+2 {
		t.Errorf("Done line %q, want %q padded over the last line and a newline", got, want)
	}
	out.Reset()
	p.Done(errors.New("late"))
	if out.Len() != 0 {
		t.Errorf("second Done wrote %q", out.String())
	}
}

func TestProgressTerminalUnknownTotalAndFailure(t *testing.T) {
	var out bytes.Buffer
	p, clock := newTestProgress(&out, nil, -1, true, 0)
	src := &pacedReader{clock: clock, chunk: 512 << 10, left: 1 << 40, step: 250 * time.Millisecond}
	readN(t, p.Reader(src), 4, 512<<10)
	lines := strings.Split(out.String(), "\r")[1:]
	if want := "centos  2.0 MiB  2.1 MB/s"; strings.TrimRight(lines[len(lines)-1], " ") != want {
		t.Errorf("last line %q, want %q", lines[len(lines)-1], want)
	}
	out.Reset()
	p.Done(errors.New("connection reset"))
	if got, want := strings.TrimSpace(out.String()), "centos  failed after 2.0 MiB: connection reset"; got != want {
		t.Errorf("Done line %q, want %q", got, want)
	}
}

// logLines decodes JSON log lines.
func logLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for l := range bytes.Lines(b) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestProgressLog(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&out, nil))
	p, clock := newTestProgress(io.Discard, log, 100e6, false, 0)
	// 1 MB a second; the default interval is 5s.
	src := &pacedReader{clock: clock, chunk: 1e6, left: 100e6, step: time.Second}
	readN(t, p.Reader(src), 12, 1e6)

	lines := logLines(t, out.Bytes())
	if len(lines) != 2 {
		t.Fatalf("%d log lines after 12s, want 2 (every 5s): %s", len(lines), out.String())
	}
	for i, l := range lines {
		want := map[string]any{
			"level": "INFO", "msg": "image progress", "image": "centos",
			"bytes": float64((i + 1) * 5e6), "total": 100e6, "rate_bps": 1e6, "eta_s": float64(100 - (i+1)*5),
		}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, l[k], v)
			}
		}
	}

	out.Reset()
	p.Done(nil)
	done := logLines(t, out.Bytes())
	if len(done) != 1 || done[0]["msg"] != "image transferred" || done[0]["bytes"] != 12e6 || done[0]["rate_bps"] != 1e6 || done[0]["elapsed_s"] != 12.0 {
		t.Errorf("Done(nil) logged %v", done)
	}
}

func TestProgressLogUnknownTotalAndFailure(t *testing.T) {
	var out bytes.Buffer
	// No logger: JSON lines go to w.
	p, clock := newTestProgress(&out, nil, -1, false, 2*time.Second)
	src := &pacedReader{clock: clock, chunk: 1000, left: 1e6, step: time.Second}
	readN(t, p.Reader(src), 3, 1000)
	p.Done(errors.New("checksum mismatch"))

	lines := logLines(t, out.Bytes())
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want a progress line and a failure line: %s", len(lines), out.String())
	}
	if l := lines[0]; l["total"] != -1.0 || l["eta_s"] != -1.0 || l["bytes"] != 2000.0 || l["rate_bps"] != 1000.0 {
		t.Errorf("progress line with unknown total: %v", l)
	}
	if l := lines[1]; l["level"] != "ERROR" || l["msg"] != "image transfer failed" || l["err"] != "checksum mismatch" || l["bytes"] != 3000.0 {
		t.Errorf("failure line: %v", l)
	}
}

func TestProgressRateFollowsChange(t *testing.T) {
	p, clock := newTestProgress(io.Discard, nil, -1, false, time.Second)
	r := p.Reader(&pacedReader{clock: clock, chunk: 1e6, left: 1e9, step: time.Second})
	readN(t, r, 5, 1e6)
	if p.rate != 1e6 {
		t.Fatalf("rate %v at a steady 1 MB/s", p.rate)
	}
	r = p.Reader(&pacedReader{clock: clock, chunk: 2e6, left: 1e9, step: time.Second})
	readN(t, r, 1, 2e6)
	if p.rate <= 1e6 || p.rate >= 2e6 {
		t.Errorf("rate %v one second after doubling, want between the old and the new", p.rate)
	}
	readN(t, r, 30, 2e6)
	if p.rate < 1.99e6 || p.rate > 2e6 {
		t.Errorf("rate %v after 30s at 2 MB/s", p.rate)
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{formatBytes(0), "0 B"},
		{formatBytes(1023), "1023 B"},
		{formatBytes(1536), "1.5 KiB"},
		{formatBytes(5 << 20), "5.0 MiB"},
		{formatBytes(int64(34 * (1 << 30) / 10)), "3.4 GiB"},
		{formatBytes(2 << 40), "2.0 TiB"},
		{formatRate(0), "0 B/s"},
		{formatRate(999), "999 B/s"},
		{formatRate(1500), "1.5 kB/s"},
		{formatRate(110e6), "110 MB/s"},
		{formatRate(9.5e6), "9.5 MB/s"},
		{formatRate(1.2e9), "1.2 GB/s"},
		{formatETA(-1), "-:--"},
		{formatETA(0), "0:00"},
		{formatETA(20), "0:20"},
		{formatETA(3599), "59:59"},
		{formatETA(3661), "1:01:01"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
