package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/engine"
)

// Event is what the callback receives, one JSON object per POST.
type Event struct {
	Type string    `json:"type"` // EventStarted, EventPhase, ...
	Time time.Time `json:"time"`
	Node string    `json:"node"`
	// Operation is OpDeploy, OpReload or OpUpdate on started, succeeded and failed events.
	Operation string               `json:"operation,omitempty"`
	Phase     string               `json:"phase,omitempty"`
	Image     string               `json:"image,omitempty"`
	Done      int64                `json:"done,omitempty"`
	Total     int64                `json:"total,omitempty"`
	Message   string               `json:"message,omitempty"`
	Error     string               `json:"error,omitempty"`
	Step      string               `json:"step,omitempty"`
	BootInfo  *bootloader.BootInfo `json:"boot_info,omitempty"`
	State     string               `json:"state,omitempty"`     // heartbeat
	AgentURL  string               `json:"agent_url,omitempty"` // heartbeat
	// Seq increases with every event a Callback sends (from 1, per process), and stays
	// the same across the retries of one event, so a receiver can order and dedupe.
	Seq int64 `json:"seq"`
	// Update is an update's outcome, on its succeeded and failed events.
	Update *UpdateOutcome `json:"update,omitempty"`
	// Durations say how long each phase of a deploy took, on its succeeded event.
	Durations *engine.Durations `json:"durations,omitempty"`
}

// Callback POSTs events to a conductor's URL.
type Callback struct {
	// URL receives one POST per event.
	URL string
	// Token is sent as "Authorization: Bearer <token>" ("": no header).
	Token string
	// Client sends the requests (nil: a client with a 10 s timeout).
	Client *http.Client
	// Backoff is the wait before retry number attempt (1, 2, ...); nil: exponential
	// from 500 ms, capped at 30 s, with jitter.
	Backoff func(attempt int) time.Duration
	// MaxAttempts bounds the attempts per event, the first included (0: 8).
	MaxAttempts int
	// Log receives a line per failed attempt (nil: discarded).
	Log *slog.Logger

	seq atomic.Int64
}

// StatusError is a callback's answer other than 2xx.
type StatusError struct {
	StatusCode int
	Body       string // the start of the response body
}

// Error says what the callback answered.
func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("callback answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("callback answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Body)
}

// retryable says whether a later attempt may succeed: the server failed or asked us to
// slow down. Any other 4xx is a fault in what we send and would fail again.
func (e *StatusError) retryable() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests
}

var defaultClient = &http.Client{Timeout: 10 * time.Second}

const (
	backoffBase = 500 * time.Millisecond
	backoffCap  = 30 * time.Second
)

// DefaultBackoff is the default Callback.Backoff: 500 ms doubling per retry, capped at
// 30 s, of which a random half is taken off so that many agents retrying against one
// conductor spread out.
func DefaultBackoff(attempt int) time.Duration {
	d := backoffCap
	if attempt < 16 {
		d = min(backoffBase<<max(attempt-1, 0), backoffCap)
	}
	return d/2 + rand.N(d/2+1)
}

// Send POSTs one event, retrying on network errors and 5xx/429 with backoff (a 429's
// Retry-After, in seconds, is honoured up to 30 s); 4xx other than 429 is not retried.
// A zero e.Seq is set to the Callback's next sequence number. It returns the last error.
func (c *Callback) Send(ctx context.Context, e Event) error {
	if e.Seq == 0 {
		e.Seq = c.seq.Add(1)
	}
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding %s event: %w", e.Type, err)
	}
	attempts := c.MaxAttempts
	if attempts <= 0 {
		attempts = 8
	}
	backoff := c.Backoff
	if backoff == nil {
		backoff = DefaultBackoff
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var last error
	for attempt := 1; ; attempt++ {
		wait, err := c.post(ctx, body)
		if err == nil {
			return nil
		}
		last = fmt.Errorf("sending %s event %d to the callback: %w", e.Type, e.Seq, err)
		var se *StatusError
		if (errors.As(err, &se) && !se.retryable()) || ctx.Err() != nil || attempt >= attempts {
			return last
		}
		if wait <= 0 {
			wait = backoff(attempt)
		}
		log.Warn("callback failed, retrying", "type", e.Type, "seq", e.Seq, "attempt", attempt, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", last, ctx.Err())
		case <-t.C:
		}
	}
}

// post makes one attempt. On a 429 it returns the wait the server asked for, if any.
func (c *Callback) post(ctx context.Context, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "provisioner-agent")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	client := c.Client
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	// Read a little of the body: for an error's message, and so the connection can be
	// reused; a conductor has nothing long to say.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	var wait time.Duration
	if resp.StatusCode == http.StatusTooManyRequests {
		if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
			wait = min(time.Duration(s)*time.Second, backoffCap)
		}
	}
	return wait, &StatusError{StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(msg))}
}
