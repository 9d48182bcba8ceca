package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/engine"
)

func TestSendRetriesServerErrors(t *testing.T) {
	rc := newReceiver(t, 500, 502, 429, 503)
	c := rc.callback()
	var waits []int
	c.Backoff = func(attempt int) time.Duration { waits = append(waits, attempt); return time.Millisecond }
	if err := c.Send(t.Context(), Event{Type: "started", Node: "n"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := rc.got(); len(got) != 1 || got[0].Type != "started" || got[0].Node != "n" {
		t.Errorf("delivered %+v", got)
	}
	// One event, one sequence number, whatever the retries.
	rc.mu.Lock()
	seqs := rc.seqs
	rc.mu.Unlock()
	if !slices.Equal(seqs, []int64{1, 1, 1, 1, 1}) {
		t.Errorf("seq per attempt %v", seqs)
	}
	if !slices.Equal(waits, []int{1, 2, 3, 4}) {
		t.Errorf("backoff attempts %v", waits)
	}
	rc.mu.Lock()
	auth := rc.auth
	rc.mu.Unlock()
	for _, h := range auth {
		if h != "Bearer cb-token" {
			t.Errorf("Authorization %q", h)
		}
	}
	if err := c.Send(t.Context(), Event{Type: "phase"}); err != nil {
		t.Fatal(err)
	}
	if got := rc.got(); got[1].Seq != 2 {
		t.Errorf("second event seq %d", got[1].Seq)
	}
}

func TestSendDoesNotRetryClientErrors(t *testing.T) {
	for _, code := range []int{400, 401, 404, 409} {
		rc := newReceiver(t, code)
		err := rc.callback().Send(t.Context(), Event{Type: "started"})
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != code {
			t.Errorf("%d: Send returned %v", code, err)
		}
		if n := rc.attempts(); n != 1 {
			t.Errorf("%d: %d attempts, want 1", code, n)
		}
	}
}

func TestSendGivesUp(t *testing.T) {
	rc := newReceiver(t, 500, 500, 500, 500, 500)
	c := rc.callback()
	c.MaxAttempts = 3
	err := c.Send(t.Context(), Event{Type: "failed"})
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 500 {
		t.Errorf("Send: %v", err)
	}
	if n := rc.attempts(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}

	// Network errors are retried as well.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	var tries atomic.Int32
	c = &Callback{URL: dead.URL, MaxAttempts: 4, Backoff: func(int) time.Duration { tries.Add(1); return time.Millisecond }}
	if err := c.Send(t.Context(), Event{Type: "started"}); err == nil {
		t.Error("Send to a closed server succeeded")
	}
	if tries.Load() != 3 {
		t.Errorf("%d retries, want 3", tries.Load())
	}
}

func TestSendStopsWithContext(t *testing.T) {
	rc := newReceiver(t, 500, 500, 500)
	c := rc.callback()
	ctx, cancel := context.WithCancel(t.Context())
	c.Backoff = func(int) time.Duration { cancel(); return time.Hour }
	err := c.Send(ctx, Event{Type: "started"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Send: %v", err)
	}
	if n := rc.attempts(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

func TestSendHonoursRetryAfter(t *testing.T) {
	var calls atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer ts.Close()
	c := &Callback{URL: ts.URL, Backoff: func(int) time.Duration { t.Error("Backoff used despite Retry-After"); return 0 }}
	start := time.Now()
	if err := c.Send(t.Context(), Event{Type: "started"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("retried after %v, want the 1 s the server asked for", d)
	}
}

func TestDefaultBackoff(t *testing.T) {
	for _, tc := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 250 * time.Millisecond, 500 * time.Millisecond},
		{2, 500 * time.Millisecond, time.Second},
		{4, 2 * time.Second, 4 * time.Second},
		{7, 15 * time.Second, 30 * time.Second},
		{60, 15 * time.Second, 30 * time.Second},
	} {
		for range 50 {
			if d := DefaultBackoff(tc.attempt); d < tc.min || d > tc.max {
				t.Errorf("DefaultBackoff(%d) = %v, want within [%v, %v]", tc.attempt, d, tc.min, tc.max)
			}
		}
	}
}

func TestStatusErrorMessage(t *testing.T) {
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unknown node", http.StatusNotFound)
	}))
	defer rc.Close()
	err := (&Callback{URL: rc.URL}).Send(t.Context(), Event{Type: "started"})
	if err == nil || err.Error() != "sending started event 1 to the callback: callback answered 404 Not Found: unknown node" {
		t.Errorf("error %q", err)
	}
}

// TestEventDurationsJSON: the durations are an added member of the succeeded event, with
// the names the README documents; events without them encode as before.
func TestEventDurationsJSON(t *testing.T) {
	e := Event{Type: EventSucceeded, Durations: &engine.Durations{TotalMS: 9000, PlanMS: 100, PartitionMS: 900, ImagesMS: 3000, BootloaderMS: 5000,
		PerImageMS: map[string]int64{"a": 2900},
		Bootloader: &engine.BootloaderMS{KernelDiscoveryMS: 4000, GrubInstallMS: 4500, GrubBIOSMS: 4500, GrubUEFIMS: 900, CommitMS: 300, Concurrent: true}}}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `"durations":{"total_ms":9000,"plan_ms":100,"partition_ms":900,"images_ms":3000,"bootloader_ms":5000,"per_image_ms":{"a":2900},` +
		`"bootloader_steps":{"kernel_discovery_ms":4000,"grub_install_ms":4500,"grub_bios_ms":4500,"grub_uefi_ms":900,"commit_ms":300,"concurrent":true}}`
	if !strings.Contains(string(b), want) {
		t.Errorf("event JSON:\n%s\nwant it to hold\n%s", b, want)
	}
	b, err = json.Marshal(Event{Type: EventPhase, Phase: "plan"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "durations") {
		t.Errorf("an event without durations: %s", b)
	}
}
