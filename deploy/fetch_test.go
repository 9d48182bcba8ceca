package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testData is a deterministic pseudo-random image: any duplicated or skipped byte range
// shows up as a mismatch.
func testData(n int) []byte {
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	b := make([]byte, n)
	r.Read(b)
	return b
}

// quickFetcher retries fast so tests need no real backoff.
func quickFetcher(retries int) *Fetcher {
	return &Fetcher{Retries: retries, Backoff: func(int) time.Duration { return time.Millisecond }}
}

// reply scripts one answer of imageServer. The zero reply is the natural answer: the
// whole image (200), or the requested range (206), complete.
type reply struct {
	status      int   // an error status to send instead (with a short body)
	ignoreRange bool  // answer a Range request with 200 and the whole image
	shiftStart  int64 // added to the Content-Range start (and what is sent)
	cut         bool  // drop the connection once the body reaches offset cutAt
	cutAt       int64
}

// imageServer writes its HTTP/1.1 answers by hand on a hijacked connection, so a test
// can drop the connection mid-body or answer a range wrongly on purpose.
type imageServer struct {
	data         []byte
	etag         string
	lastModified string
	script       func(i int) reply // the answer to request i (0-based); nil: natural

	mu   sync.Mutex
	reqs []http.Header
}

func (s *imageServer) start(t *testing.T) string {
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.URL + "/images/centos.tar.zst"
}

func (s *imageServer) requests() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs
}

func (s *imageServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	i := len(s.reqs)
	s.reqs = append(s.reqs, r.Header.Clone())
	s.mu.Unlock()
	var rp reply
	if s.script != nil {
		rp = s.script(i)
	}
	if rp.status != 0 {
		http.Error(w, http.StatusText(rp.status), rp.status)
		return
	}
	from, ranged := int64(0), false
	if v, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
		from, _ = strconv.ParseInt(strings.TrimSuffix(v, "-"), 10, 64)
		ranged = true
	}
	code := http.StatusOK
	hdr := map[string]string{"Connection": "close"}
	if s.etag != "" {
		hdr["ETag"] = s.etag
	}
	if s.lastModified != "" {
		hdr["Last-Modified"] = s.lastModified
	}
	if ranged && !rp.ignoreRange {
		code = http.StatusPartialContent
		from += rp.shiftStart
		hdr["Content-Range"] = fmt.Sprintf("bytes %d-%d/%d", from, len(s.data)-1, len(s.data))
	} else {
		from = 0
	}
	hdr["Content-Length"] = strconv.Itoa(len(s.data) - int(from))
	end := int64(len(s.data))
	if rp.cut {
		end = rp.cutAt
	}
	conn, bw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	writeRaw(bw, code, hdr, s.data[from:end])
}

func writeRaw(bw *bufio.ReadWriter, code int, hdr map[string]string, body []byte) {
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	for k, v := range hdr {
		fmt.Fprintf(bw, "%s: %s\r\n", k, v)
	}
	bw.WriteString("\r\n")
	bw.Write(body)
	bw.Flush()
}

// cutsAt scripts a connection drop at each offset in turn, then natural answers.
func cutsAt(offsets ...int64) func(int) reply {
	return func(i int) reply {
		if i < len(offsets) {
			return reply{cut: true, cutAt: offsets[i]}
		}
		return reply{}
	}
}

func TestOpenStreamsWholeBody(t *testing.T) {
	data := testData(300_000)
	srv := &imageServer{data: data}
	url := srv.start(t)
	s, err := quickFetcher(0).Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Size() != int64(len(data)) {
		t.Errorf("Size() = %d, want %d", s.Size(), len(data))
	}
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, not the image", len(got))
	}
	if s.Resumes() != 0 {
		t.Errorf("Resumes() = %d, want 0", s.Resumes())
	}
	reqs := srv.requests()
	if len(reqs) != 1 || reqs[0].Get("Accept-Encoding") != "identity" || reqs[0].Get("Range") != "" {
		t.Errorf("requests = %v, want one plain GET asking for identity encoding", reqs)
	}
}

func TestOpenResumesAfterCuts(t *testing.T) {
	const lm = "Mon, 02 Jan 2006 15:04:05 GMT"
	for _, tc := range []struct {
		name, etag, lastModified string
		cuts                     []int64
		wantIfRange              string
	}{
		{"one cut, strong ETag", `"v1"`, lm, []int64{40_000}, `"v1"`},
		{"several cuts", `"v1"`, "", []int64{10_000, 30_000, 99_999}, `"v1"`},
		{"weak ETag falls back to Last-Modified", `W/"v1"`, lm, []int64{50_000}, lm},
		{"no validator", "", "", []int64{1, 2}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := testData(100_000)
			srv := &imageServer{data: data, etag: tc.etag, lastModified: tc.lastModified, script: cutsAt(tc.cuts...)}
			url := srv.start(t)
			s, err := quickFetcher(2).Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got, err := io.ReadAll(s)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes, not the image byte for byte", len(got))
			}
			if s.Resumes() != len(tc.cuts) {
				t.Errorf("Resumes() = %d, want %d", s.Resumes(), len(tc.cuts))
			}
			reqs := srv.requests()
			if len(reqs) != len(tc.cuts)+1 {
				t.Fatalf("%d requests, want %d", len(reqs), len(tc.cuts)+1)
			}
			for i, cut := range tc.cuts {
				h := reqs[i+1]
				if want := fmt.Sprintf("bytes=%d-", cut); h.Get("Range") != want {
					t.Errorf("request %d: Range %q, want %q", i+1, h.Get("Range"), want)
				}
				if h.Get("If-Range") != tc.wantIfRange {
					t.Errorf("request %d: If-Range %q, want %q", i+1, h.Get("If-Range"), tc.wantIfRange)
				}
			}
		})
	}
}

func TestOpenRestartsWhenNothingWasRead(t *testing.T) {
	data := testData(10_000)
	// The first body breaks off before its first byte; the server ignores ranges, which
	// does not matter because none is needed.
	srv := &imageServer{data: data, script: func(i int) reply {
		return reply{cut: i == 0, ignoreRange: true}
	}}
	s, err := quickFetcher(2).Open(context.Background(), srv.start(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll = %d bytes, %v; want the image", len(got), err)
	}
	if s.Resumes() != 1 {
		t.Errorf("Resumes() = %d, want 1", s.Resumes())
	}
	if r := srv.requests()[1].Get("Range"); r != "" {
		t.Errorf("restart sent Range %q, want none", r)
	}
}

// readFails reads s to the end, checks that what it got is exactly the image's first
// want bytes (nothing duplicated), and returns the error.
func readFails(t *testing.T, s *Stream, data []byte, want int) error {
	t.Helper()
	got, err := io.ReadAll(s)
	if err == nil {
		t.Fatalf("ReadAll succeeded with %d bytes, want an error", len(got))
	}
	if !bytes.Equal(got, data[:want]) {
		t.Errorf("got %d bytes before the error, want exactly the first %d of the image", len(got), want)
	}
	if _, again := s.Read(make([]byte, 10)); again == nil {
		t.Error("a Read after the failure succeeded")
	}
	return err
}

func TestOpenRefusesBadResume(t *testing.T) {
	for _, tc := range []struct {
		name     string
		second   reply
		wantText string
	}{
		{"server ignores Range", reply{ignoreRange: true}, "200 OK to a request for bytes 4000-"},
		{"206 from the wrong start", reply{shiftStart: -10}, `Content-Range "bytes 3990-9999/10000"`},
		{"206 past the start", reply{shiftStart: 10}, `Content-Range "bytes 4010-9999/10000"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := testData(10_000)
			srv := &imageServer{data: data, etag: `"v1"`, script: func(i int) reply {
				if i == 0 {
					return reply{cut: true, cutAt: 4000}
				}
				return tc.second
			}}
			url := srv.start(t)
			s, err := quickFetcher(3).Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = readFails(t, s, data, 4000)
			if !strings.Contains(err.Error(), tc.wantText) || !strings.Contains(err.Error(), url) {
				t.Errorf("error %q does not name the URL and %q", err, tc.wantText)
			}
			if n := len(srv.requests()); n != 2 {
				t.Errorf("%d requests, want 2 (a wrong answer is not retried)", n)
			}
		})
	}
}

func TestOpenTruncatedWithoutResume(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		wantReqs int
	}{
		{"503 for ever", http.StatusServiceUnavailable, 1 + 3},
		{"416", http.StatusRequestedRangeNotSatisfiable, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := testData(10_000)
			srv := &imageServer{data: data, script: func(i int) reply {
				if i == 0 {
					return reply{cut: true, cutAt: 6000}
				}
				return reply{status: tc.status}
			}}
			url := srv.start(t)
			s, err := quickFetcher(3).Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = readFails(t, s, data, 6000)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error %q does not wrap io.ErrUnexpectedEOF", err)
			}
			for _, want := range []string{url, "6000 of 10000 bytes", strconv.Itoa(tc.status)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if n := len(srv.requests()); n != tc.wantReqs {
				t.Errorf("%d requests, want %d", n, tc.wantReqs)
			}
		})
	}
}

func TestOpenStatusRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []int // answers before the natural one
		wantErr  bool
		wantReqs int
	}{
		{"404 is not retried", []int{404, 404}, true, 1},
		{"403 is not retried", []int{403}, true, 1},
		{"503 twice then 200", []int{503, 503}, false, 3},
		{"429 and 408 are retried", []int{429, 408}, false, 3},
		{"500 beyond the retries", []int{500, 500, 500, 500}, true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := testData(1000)
			srv := &imageServer{data: data, script: func(i int) reply {
				if i < len(tc.statuses) {
					return reply{status: tc.statuses[i]}
				}
				return reply{}
			}}
			url := srv.start(t)
			s, err := quickFetcher(2).Open(context.Background(), url)
			if n := len(srv.requests()); n != tc.wantReqs {
				t.Errorf("%d requests, want %d", n, tc.wantReqs)
			}
			if tc.wantErr {
				if err == nil {
					s.Close()
					t.Fatal("Open succeeded, want an error")
				}
				if !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), strconv.Itoa(tc.statuses[0])) {
					t.Errorf("error %q does not name the URL and the status", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got, err := io.ReadAll(s); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadAll = %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestOpenNetworkErrorIsRetried(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/img"
	srv.Close() // nothing listens any more: connection refused
	_, err := quickFetcher(1).Open(context.Background(), url)
	if err == nil || !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), "after 2 attempts") {
		t.Fatalf("Open error = %v, want one naming the URL after 2 attempts", err)
	}
}

func TestOpenUnknownSize(t *testing.T) {
	data := testData(50_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(data[:20_000])
		w.(http.Flusher).Flush() // chunked: no Content-Length
		w.Write(data[20_000:])
	}))
	defer srv.Close()
	s, err := quickFetcher(0).Open(context.Background(), srv.URL+"/img")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Size() != -1 {
		t.Errorf("Size() = %d, want -1", s.Size())
	}
	if got, err := io.ReadAll(s); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll = %d bytes, %v", len(got), err)
	}
}

// hangingServer sends the first n bytes of data with a Content-Length of all of it,
// then waits until the client goes away or the test ends; later requests are served
// ranges normally.
func hangingServer(t *testing.T, data []byte, n int, sent chan<- struct{}) string {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			http.ServeContent(w, r, "img", time.Time{}, bytes.NewReader(data))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:n])
		w.(http.Flusher).Flush()
		if sent != nil {
			close(sent)
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	return srv.URL + "/img"
}

func TestContextCancelStopsStream(t *testing.T) {
	data := testData(100_000)
	sent := make(chan struct{})
	url := hangingServer(t, data, 1000, sent)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := quickFetcher(0).Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error)
	go func() {
		_, err := io.ReadAll(s)
		done <- err
	}()
	<-sent
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ReadAll error = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not stop after cancel")
	}
}

func TestStalledBodyIsResumed(t *testing.T) {
	data := testData(20_000)
	url := hangingServer(t, data, 5000, nil)
	f := quickFetcher(2)
	f.stall = 20 * time.Millisecond
	s, err := f.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := io.ReadAll(s); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll = %d bytes, %v", len(got), err)
	}
	if s.Resumes() != 1 {
		t.Errorf("Resumes() = %d, want 1", s.Resumes())
	}
}

func TestOpenFile(t *testing.T) {
	data := testData(70_000)
	dir := t.TempDir()
	path := filepath.Join(dir, "my image.raw")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{path, "file://" + strings.ReplaceAll(path, " ", "%20"), "file://localhost" + path} {
		t.Run(src, func(t *testing.T) {
			s, err := quickFetcher(0).Open(context.Background(), src)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Size() != int64(len(data)) {
				t.Errorf("Size() = %d, want %d", s.Size(), len(data))
			}
			if got, err := io.ReadAll(s); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadAll = %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.tar")
	for _, tc := range []struct {
		src, want string
		is        error
	}{
		{missing, missing, fs.ErrNotExist},
		{"file://" + missing, missing, fs.ErrNotExist},
		{dir, "is a directory", nil},
		{"file://elsewhere/img", `host "elsewhere"`, nil},
		{"ftp://host/img", `unsupported scheme "ftp"`, nil},
		{"", "empty image source", nil},
	} {
		_, err := quickFetcher(0).Open(context.Background(), tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) error = %v, want one containing %q", tc.src, err, tc.want)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("Open(%q) error = %v, want errors.Is %v", tc.src, err, tc.is)
		}
	}
}

func TestFileStreamCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(path, testData(1000), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := quickFetcher(0).Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cancel()
	if _, err := s.Read(make([]byte, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("Read after cancel = %v, want context.Canceled", err)
	}
}

func TestGet(t *testing.T) {
	big := bytes.Repeat([]byte("x"), maxGetBytes+1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			w.Write([]byte("hello\n"))
		case "/big":
			w.Write(big)
		case "/big-chunked":
			w.Write(big[:1000])
			w.(http.Flusher).Flush()
			w.Write(big[1000:])
		}
	}))
	defer srv.Close()
	f := quickFetcher(0)
	got, err := f.Get(context.Background(), srv.URL+"/small")
	if err != nil || string(got) != "hello\n" {
		t.Errorf("Get(/small) = %q, %v", got, err)
	}
	for _, p := range []string{"/big", "/big-chunked"} {
		if _, err := f.Get(context.Background(), srv.URL+p); err == nil || !strings.Contains(err.Error(), "limit") || !strings.Contains(err.Error(), srv.URL+p) {
			t.Errorf("Get(%s) error = %v, want the size limit naming the URL", p, err)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 10-99/100", 10, 100, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes 10-99/50", 0, 0, false},
		{"bytes 10-5/100", 0, 0, false},
		{"bytes */100", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"", 0, 0, false},
	} {
		start, total, err := parseContentRange(tc.in)
		if (err == nil) != tc.ok || tc.ok && (start != tc.start || total != tc.total) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tc.in, start, total, err)
		}
	}
}

func TestDefaultBackoff(t *testing.T) {
	for attempt := 1; attempt <= 10; attempt++ {
		full := min(time.Second<<(attempt-1), maxBackoff)
		if attempt > 6 {
			full = maxBackoff
		}
		for range 20 {
			if d := defaultBackoff(attempt); d < full/2 || d > full {
				t.Fatalf("defaultBackoff(%d) = %v, want within [%v, %v]", attempt, d, full/2, full)
			}
		}
	}
}
