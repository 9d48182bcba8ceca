package fleetlock

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
	"strings"
	"time"
)

// Client speaks the protocol for one node of one group: PreReboot takes the node's slot
// before a reboot, SteadyState gives it back once the node's OS is confirmed healthy.
type Client struct {
	// BaseURL is the server's base URL (http or https), with or without a trailing "/".
	BaseURL string
	// ID is the node's identity (NodeID derives a stable one), Group its group ("" is
	// DefaultGroup).
	ID, Group string
	// HTTP sends the requests; nil is a client with a 30-second timeout per request.
	HTTP *http.Client
	// Log gets a line per wait of Lock; nil discards.
	Log *slog.Logger
	// MinBackoff and MaxBackoff bound Lock's waits between tries (zero: 1s and 1m).
	MinBackoff, MaxBackoff time.Duration
}

// Default waits of Lock between tries, and the default per-request timeout.
const (
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = time.Minute
	requestTimeout    = 30 * time.Second
	maxErrorBody      = 64 << 10
)

// ErrLockTimeout is matched by Lock's error when the slot could not be taken in time.
var ErrLockTimeout = errors.New("no reboot slot in time")

// PreReboot takes the node's slot in its group (POST /v1/pre-reboot). Taking a slot the
// node already holds succeeds. A full group is an *Error of kind KindFailedLock.
func (c *Client) PreReboot(ctx context.Context) error {
	return c.post(ctx, PreRebootPath)
}

// SteadyState gives the node's slot back (POST /v1/steady-state). Releasing a slot the
// node does not hold succeeds.
func (c *Client) SteadyState(ctx context.Context) error {
	return c.post(ctx, SteadyStatePath)
}

// group is the group requests name.
func (c *Client) group() string {
	if c.Group == "" {
		return DefaultGroup
	}
	return c.Group
}

// Endpoint is the URL of the endpoint path (PreRebootPath or SteadyStatePath) under
// the base URL, which may or may not end in "/".
func (c *Client) Endpoint(path string) string {
	return strings.TrimRight(c.BaseURL, "/") + path
}

// post sends one request of the protocol and classifies its answer: 200 is success,
// any other status a failure, an *Error when the body is one.
func (c *Client) post(ctx context.Context, path string) error {
	if c.ID == "" {
		return errors.New("fleetlock: no node id")
	}
	if !ValidGroup(c.group()) {
		return fmt.Errorf("fleetlock: group %q: want letters, digits, '.' and '-' only", c.group())
	}
	body, err := json.Marshal(Request{ClientParams: ClientParams{ID: c.ID, Group: c.group()}})
	if err != nil {
		return fmt.Errorf("fleetlock: %w", err)
	}
	url := c.Endpoint(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("fleetlock: %s: %w", url, err)
	}
	req.Header.Set(HeaderName, "true")
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: requestTimeout}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("fleetlock: POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var e Error
	if json.Unmarshal(data, &e) == nil && e.Kind != "" {
		e.Status = resp.StatusCode
		return fmt.Errorf("POST %s: %w", url, &e)
	}
	text := strings.TrimSpace(string(data))
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	return fmt.Errorf("fleetlock: POST %s: HTTP %d: %q", url, resp.StatusCode, text)
}

// Lock takes the node's slot, trying again while the group is full (any failure: a
// full group, a server that cannot be reached or answers an error) with exponentially
// growing, jittered waits between MinBackoff and MaxBackoff, for timeout at most (0:
// one try). Each wait is logged with the reason. Its error after the timeout is a
// *LockTimeoutError, matches ErrLockTimeout and names the group and the server; a
// cancelled ctx ends it at once.
func (c *Client) Lock(ctx context.Context, timeout time.Duration) error {
	return c.retry(ctx, timeout, "take", c.PreReboot)
}

// Unlock gives the node's slot back, trying again as Lock does while the server cannot
// be reached or fails (a node releasing at boot may come up before its network).
func (c *Client) Unlock(ctx context.Context, timeout time.Duration) error {
	return c.retry(ctx, timeout, "release", c.SteadyState)
}

// retry calls fn until it succeeds, timeout has passed or ctx ends, waiting between
// tries; verb ("take", "release") names the operation in logs and errors.
func (c *Client) retry(ctx context.Context, timeout time.Duration, verb string, fn func(context.Context) error) error {
	lo, hi := c.MinBackoff, c.MaxBackoff
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	hi = max(hi, lo)
	start := time.Now()
	deadline := start.Add(timeout)
	wait := lo
	for try := 1; ; try++ {
		err := fn(ctx)
		if err == nil {
			if try > 1 {
				c.logger().Info("fleetlock: "+verb+": done", "group", c.group(), "id", c.ID, "tries", try, "waited", time.Since(start).Round(time.Millisecond).String())
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("fleetlock: trying to %s a reboot slot in group %q at %s: %w", verb, c.group(), c.BaseURL, ctx.Err())
		}
		left := time.Until(deadline)
		if left <= 0 {
			return &LockTimeoutError{Op: verb, Group: c.group(), Server: c.BaseURL, Waited: time.Since(start), Tries: try, Last: err}
		}
		// Jitter: a wait between half and all of the current step, so that nodes that
		// found the group full at once do not all try again at once.
		d := min(wait/2+rand.N(wait/2+1), left)
		c.logger().Info("fleetlock: could not "+verb+" the reboot slot yet, waiting", "group", c.group(), "id", c.ID, "server", c.BaseURL, "try", try, "wait", d.Round(time.Millisecond).String(), "reason", err.Error())
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("fleetlock: trying to %s a reboot slot in group %q at %s: %w", verb, c.group(), c.BaseURL, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, hi)
	}
}

func (c *Client) logger() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// LockTimeoutError is the failure of Lock (Op "take") or Unlock (Op "release") once
// its timeout has passed: the group, the server, how long and how often it tried, and
// the last answer.
type LockTimeoutError struct {
	Op            string
	Group, Server string
	Waited        time.Duration
	Tries         int
	Last          error
}

// Error says what could not be done, where, after how long, and the last answer.
func (e *LockTimeoutError) Error() string {
	what := "no reboot slot"
	if e.Op == "release" {
		what = "could not release the reboot slot"
	}
	return fmt.Sprintf("fleetlock: %s in group %q at %s after %v (%d tries); last answer: %v",
		what, e.Group, e.Server, e.Waited.Round(100*time.Millisecond), e.Tries, e.Last)
}

// Is makes Lock's error match ErrLockTimeout.
func (e *LockTimeoutError) Is(target error) bool {
	return target == ErrLockTimeout && e.Op != "release"
}

// Unwrap gives the last answer (an *Error when the server sent one).
func (e *LockTimeoutError) Unwrap() error { return e.Last }
