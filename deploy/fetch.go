package deploy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	defaultRetries = 5
	maxBackoff     = 30 * time.Second
	// maxGetBytes bounds Get: a checksum file is a few lines, so anything bigger is a
	// wrong URL (the image itself, a proxy's HTML page) and must not be buffered.
	maxGetBytes = 1 << 20
	// defaultStall is how long one read of an HTTP body may wait for data before the
	// connection counts as dead and is resumed. The client has no overall timeout
	// (images are large), so a peer that stops sending without closing would otherwise
	// hang the deploy for ever.
	defaultStall = 2 * time.Minute
)

// Fetcher opens image sources: http://, https://, file:// URLs and plain paths.
type Fetcher struct {
	Client  *http.Client                    // nil: a client with connect/header timeouts but no overall timeout (images are large)
	Retries int                             // attempts after the first for one request or resume; 0 means the default 5
	Backoff func(attempt int) time.Duration // nil: exponential from 1s, capped at 30s, with jitter
	Log     *slog.Logger                    // nil: discard

	stall time.Duration // tests shorten it; 0 means defaultStall
}

// defaultClient is shared by every Fetcher without a Client, so connections to one
// image server are reused across images.
var defaultClient = sync.OnceValue(func() *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          16,
	}}
})

func (f *Fetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	return defaultClient()
}

func (f *Fetcher) retries() int {
	switch {
	case f.Retries == 0:
		return defaultRetries
	case f.Retries < 0:
		return 0
	}
	return f.Retries
}

func (f *Fetcher) log() *slog.Logger {
	if f.Log != nil {
		return f.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (f *Fetcher) stallTimeout() time.Duration {
	if f.stall > 0 {
		return f.stall
	}
	return defaultStall
}

// defaultBackoff doubles from 1s up to maxBackoff. Half of each delay is random, so many
// machines that lost the same server do not come back to it in lockstep.
func defaultBackoff(attempt int) time.Duration {
	d := min(time.Second<<min(max(attempt-1, 0), 6), maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// wait sleeps before retry number attempt, honouring a server's Retry-After when it asks
// for longer; it returns early with the context's error.
func (f *Fetcher) wait(ctx context.Context, attempt int, cause error) error {
	backoff := f.Backoff
	if backoff == nil {
		backoff = defaultBackoff
	}
	d := backoff(attempt)
	var se *statusError
	if errors.As(cause, &se) && se.retryAfter > d {
		d = min(se.retryAfter, 2*maxBackoff)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// statusError is an HTTP answer that carries no image bytes.
type statusError struct {
	code       int
	status     string
	retryAfter time.Duration
}

func (e *statusError) Error() string { return "server answered " + e.status }

// retryable tells transient failures (server overload, network) from ones that asking
// again does not change (a missing image, a certificate the machine does not trust).
func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.code >= 500 || se.code == http.StatusRequestTimeout || se.code == http.StatusTooManyRequests
	}
	var cert *tls.CertificateVerificationError
	return !errors.As(err, &cert)
}

// Open starts streaming src. The returned Stream never holds the whole image in memory and
// never stages it on disk. For HTTP: a 200 with Content-Length sets Size; if the connection
// drops mid-body, Read transparently re-requests with "Range: bytes=N-" (and If-Range with
// the ETag or Last-Modified when the server gave one), retrying with backoff up to Retries
// times per failure; a 206 whose Content-Range does not start at N, or a 200 answer to a
// Range request (server ignores ranges), is not silently accepted: it fails (the caller
// would otherwise get duplicated bytes), unless nothing has been read yet. The byte count
// must equal Content-Length: a body that ends early with no way to resume is an error that
// wraps io.ErrUnexpectedEOF and names the URL and the byte counts — never a silent success.
// 4xx other than 408/429 are not retried; 5xx, 408, 429 and network errors are.
// file:// and plain paths open the file (Size from stat). ctx cancels everything.
func (f *Fetcher) Open(ctx context.Context, src string) (*Stream, error) {
	u, path, err := parseSource(src)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("opening %s: %w", src, context.Cause(ctx))
	}
	if u == nil {
		return openFile(ctx, path)
	}
	s := &Stream{ctx: ctx, name: u.Redacted(), size: -1, f: f, url: u.String()}
	if err := s.connect(nil); err != nil {
		return nil, fmt.Errorf("fetching %s: %w", s.name, err)
	}
	// The first body starts with a clean slate: failures while opening were not
	// failures of the body.
	s.failures = 0
	return s, nil
}

// parseSource returns the URL of an http(s) source, or the path of a file source.
func parseSource(src string) (*url.URL, string, error) {
	if src == "" {
		return nil, "", errors.New("empty image source")
	}
	scheme, _, ok := strings.Cut(src, "://")
	if !ok || strings.ContainsAny(scheme, `/\`) {
		return nil, src, nil // a plain path, possibly with "://" somewhere inside
	}
	u, err := url.Parse(src)
	if err != nil {
		return nil, "", fmt.Errorf("parsing image source: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		if u.Host == "" {
			return nil, "", fmt.Errorf("image source %s: no host", u.Redacted())
		}
		return u, "", nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, "", fmt.Errorf("image source %s: host %q is not this machine", src, u.Host)
		}
		if u.Path == "" {
			return nil, "", fmt.Errorf("image source %s: no path", src)
		}
		return nil, u.Path, nil
	}
	return nil, "", fmt.Errorf("image source %s: unsupported scheme %q (want http, https, file or a path)", u.Redacted(), u.Scheme)
}

func openFile(ctx context.Context, path string) (*Stream, error) {
	fh, err := os.Open(path)
	if err != nil {
		// The *PathError's own text would repeat the path.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("opening image %s: %w", path, err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("opening image %s: %w", path, err)
	}
	if st.IsDir() {
		fh.Close()
		return nil, fmt.Errorf("opening image %s: is a directory", path)
	}
	size := int64(-1) // a pipe or device: stat does not know
	if st.Mode().IsRegular() {
		size = st.Size()
	}
	return &Stream{ctx: ctx, name: path, size: size, body: fh}, nil
}

// Stream is an open image source.
type Stream struct {
	ctx     context.Context
	name    string        // the path, or the URL without credentials, for errors and logs
	size    int64         // -1 when unknown
	read    int64         // bytes handed to the caller
	resumes int           // bodies opened after the first
	body    io.ReadCloser // the file or the current response body; nil after a drop
	err     error         // sticky: once the stream ended or failed, every Read returns it

	// HTTP only.
	f         *Fetcher
	url       string
	validator string // If-Range value: a strong ETag, else Last-Modified
	etag      string
	failures  int   // failed attempts since bytes last arrived
	cause     error // why the last body ended early
}

// Size returns the image size in bytes, -1 when unknown.
func (s *Stream) Size() int64 { return s.size }

// Resumes returns how many times the body was resumed (for logs and tests).
func (s *Stream) Resumes() int { return s.resumes }

// Close releases the connection or file. Reads after Close fail.
func (s *Stream) Close() error {
	var err error
	if s.body != nil {
		err = s.body.Close()
		s.body = nil
	}
	if s.err == nil || s.err == io.EOF {
		s.err = fmt.Errorf("reading %s: %w", s.name, os.ErrClosed)
	}
	if err != nil && s.url == "" {
		return fmt.Errorf("closing %s: %w", s.name, err)
	}
	return nil // an HTTP body's close error says nothing about the image
}

// Read reads image bytes, resuming an HTTP body that broke off (see Open).
func (s *Stream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.ctx.Err() != nil {
		return 0, s.fail(fmt.Errorf("reading %s: %w", s.name, context.Cause(s.ctx)))
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if s.body == nil {
			if err := s.resume(); err != nil {
				return 0, s.fail(err)
			}
		}
		n, err := s.body.Read(p)
		s.read += int64(n)
		if n > 0 {
			s.failures = 0
		}
		switch {
		case err == nil:
			return n, nil
		case s.size >= 0 && s.read > s.size:
			return n, s.fail(fmt.Errorf("reading %s: got %d bytes, more than the %d announced", s.name, s.read, s.size))
		case err == io.EOF && (s.size < 0 || s.read == s.size):
			s.err = io.EOF
			return n, io.EOF
		case s.url == "" && err == io.EOF:
			return n, s.fail(fmt.Errorf("reading %s: %w after %d of %d bytes (file shrank)", s.name, io.ErrUnexpectedEOF, s.read, s.size))
		case s.url == "":
			return n, s.fail(fmt.Errorf("reading %s: %w", s.name, err))
		}
		// An HTTP body broke off or ended short: drop it, and resume now unless there are
		// bytes to hand out first (a Read must not return 0, nil).
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		s.cause = err
		s.failures++
		s.body.Close()
		s.body = nil
		if n > 0 {
			return n, nil
		}
	}
}

// fail makes err the answer to every later Read and releases the body.
func (s *Stream) fail(err error) error {
	s.err = err
	if s.body != nil {
		s.body.Close()
		s.body = nil
	}
	return err
}

// resume re-opens the body at s.read after it broke off.
func (s *Stream) resume() error {
	if s.ctx.Err() != nil {
		return fmt.Errorf("reading %s: %w", s.name, context.Cause(s.ctx))
	}
	s.f.log().Info("resuming download", "url", s.name, "offset", s.read, "size", s.size, "err", s.cause)
	err := s.connect(s.cause)
	if err == nil {
		s.resumes++
		return nil
	}
	if s.ctx.Err() != nil {
		return fmt.Errorf("reading %s: %w", s.name, err)
	}
	size := "unknown"
	if s.size >= 0 {
		size = strconv.FormatInt(s.size, 10)
	}
	return fmt.Errorf("fetching %s: %w after %d of %s bytes; resuming: %w", s.name, io.ErrUnexpectedEOF, s.read, size, err)
}

// connect requests the body from s.read on, retrying transient failures with backoff
// until s.failures passes the retry budget. cause is the failure that led here.
func (s *Stream) connect(cause error) error {
	retries := s.f.retries()
	attempts := 0
	for {
		if s.failures > retries {
			return cause // bodies kept breaking off before a single byte arrived
		}
		if s.failures > 0 {
			if err := s.f.wait(s.ctx, s.failures, cause); err != nil {
				return err
			}
		}
		err := s.request()
		if err == nil {
			return nil
		}
		if s.ctx.Err() != nil {
			return context.Cause(s.ctx)
		}
		var perm *permanentError
		if errors.As(err, &perm) || !retryable(err) {
			return err
		}
		attempts++
		s.failures++
		if s.failures > retries {
			return fmt.Errorf("gave up after %d attempts: %w", attempts, err)
		}
		cause = err
		s.f.log().Warn("download failed, retrying", "url", s.name, "offset", s.read, "attempt", s.failures, "err", err)
	}
}

// permanentError is a response that asking again does not fix: the server does not
// serve the byte range we need.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanentf(format string, args ...any) error {
	return &permanentError{fmt.Errorf(format, args...)}
}

// request sends one GET for the bytes from s.read on and, when the answer carries
// exactly those bytes, installs its body.
func (s *Stream) request() error {
	ctx, cancel := context.WithCancel(s.ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		cancel()
		return &permanentError{err}
	}
	// Ask for the bytes as stored: with transparent gzip, Content-Length and byte ranges
	// would count compressed bytes while Read returns decompressed ones.
	req.Header.Set("Accept-Encoding", "identity")
	if s.read > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", s.read))
		if s.validator != "" {
			// Without it, a changed image would be spliced onto the old one's start.
			req.Header.Set("If-Range", s.validator)
		}
	}
	resp, err := s.f.client().Do(req)
	if err != nil {
		cancel()
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL
		}
		return err
	}
	if err := s.accept(resp); err != nil {
		cancel()
		resp.Body.Close()
		return err
	}
	s.body = newStallBody(resp.Body, cancel, s.f.stallTimeout())
	return nil
}

// accept checks that resp carries the image bytes from s.read on, and takes its size
// and validators.
func (s *Stream) accept(resp *http.Response) error {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &statusError{code: resp.StatusCode, status: resp.Status}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			e.retryAfter = time.Duration(secs) * time.Second
		}
		return e
	}
	etag := resp.Header.Get("ETag")
	if s.read == 0 {
		if resp.StatusCode != http.StatusOK {
			return permanentf("server answered %s to a request for the whole image", resp.Status)
		}
		s.size = resp.ContentLength
		s.etag = etag
		s.validator = ""
		if etag != "" && !strings.HasPrefix(etag, "W/") {
			s.validator = etag // If-Range allows only strong validators
		} else if lm := resp.Header.Get("Last-Modified"); lm != "" {
			s.validator = lm
		}
		return nil
	}
	if resp.StatusCode != http.StatusPartialContent {
		return permanentf("server answered %s to a request for bytes %d- (it ignores ranges, or the image changed); not restarting, which would repeat bytes already read", resp.Status, s.read)
	}
	start, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err != nil {
		return &permanentError{err}
	}
	if start != s.read {
		return permanentf("server sent Content-Range %q for a request of bytes %d-", resp.Header.Get("Content-Range"), s.read)
	}
	if total >= 0 && s.size >= 0 && total != s.size {
		return permanentf("image size changed from %d to %d bytes while resuming", s.size, total)
	}
	if etag != "" && s.etag != "" && etag != s.etag {
		return permanentf("image changed while resuming (ETag %s, was %s)", etag, s.etag)
	}
	if s.size < 0 {
		s.size = total
	}
	return nil
}

// parseContentRange reads "bytes START-END/TOTAL"; total is -1 for "*".
func parseContentRange(v string) (start, total int64, err error) {
	bad := fmt.Errorf("malformed Content-Range %q", v)
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, bad
	}
	rng, tot, ok := strings.Cut(strings.TrimSpace(rest), "/")
	if !ok {
		return 0, 0, bad
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, bad
	}
	start, err1 := strconv.ParseInt(first, 10, 64)
	end, err2 := strconv.ParseInt(last, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, bad
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= end {
			return 0, 0, bad
		}
	}
	return start, total, nil
}

// stallBody fails a body read that waits longer than stall for data, by cancelling the
// request; the stream then resumes on a fresh connection.
type stallBody struct {
	rc     io.ReadCloser
	cancel context.CancelFunc
	timer  *time.Timer
	stall  time.Duration
}

func newStallBody(rc io.ReadCloser, cancel context.CancelFunc, stall time.Duration) *stallBody {
	t := time.AfterFunc(stall, cancel)
	t.Stop()
	return &stallBody{rc: rc, cancel: cancel, timer: t, stall: stall}
}

func (b *stallBody) Read(p []byte) (int, error) {
	// Only time spent waiting on the network counts: a slow consumer (a busy disk) must
	// not look like a dead server.
	b.timer.Reset(b.stall)
	n, err := b.rc.Read(p)
	if !b.timer.Stop() && err != nil {
		err = fmt.Errorf("no data for %v: %w", b.stall, err)
	}
	return n, err
}

func (b *stallBody) Close() error {
	b.timer.Stop()
	b.cancel()
	return b.rc.Close()
}

// Get fetches a small document (a checksum file) fully, with the same retries; it refuses
// bodies over 1 MiB.
func (f *Fetcher) Get(ctx context.Context, src string) ([]byte, error) {
	s, err := f.Open(ctx, src)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if s.Size() > maxGetBytes {
		return nil, fmt.Errorf("fetching %s: %d bytes is over the %d-byte limit for a checksum file", s.name, s.Size(), maxGetBytes)
	}
	b, err := io.ReadAll(io.LimitReader(s, maxGetBytes+1))
	if err != nil {
		return nil, err // Read's errors name the source
	}
	if len(b) > maxGetBytes {
		return nil, fmt.Errorf("fetching %s: over the %d-byte limit for a checksum file", s.name, maxGetBytes)
	}
	return b, nil
}
