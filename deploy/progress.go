package deploy

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"
)

const (
	defaultProgressInterval = 5 * time.Second
	// ttyRedraw bounds how often the terminal line is redrawn: often enough to look
	// live, rarely enough not to cost throughput or flood a slow console.
	ttyRedraw = 200 * time.Millisecond
	// rateWindow is the time constant of the smoothed rate: long enough that the ETA
	// does not jump with every TCP hiccup, short enough to follow a real change.
	rateWindow = 3 * time.Second
)

// Progress reports one image's transfer: bytes, rate and ETA.
type Progress struct {
	w     io.Writer
	log   *slog.Logger
	image string
	total int64
	tty   bool
	every time.Duration
	now   func() time.Time

	mu        sync.Mutex
	start     time.Time
	bytes     int64
	lastAt    time.Time // time of the last report
	lastBytes int64     // bytes at the last report
	rate      float64   // smoothed bytes per second; 0 until the first report
	width     int       // length of the last terminal line, to blank what a shorter one leaves
	done      bool
	notify    func(done, total int64)
}

// Notify makes every report (and the final one) also call f with the bytes so far and
// the total (-1 when unknown), for an agent that forwards progress as events. f runs
// under the reporter's lock and must not block.
func (p *Progress) Notify(f func(done, total int64)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notify = f
}

// NewProgress writes to w: on a terminal (tty true) a single status line redrawn with \r at most
// every 200ms ("centos  1.2 GiB / 3.4 GiB  35%  110 MB/s  ETA 0:20"); otherwise one structured
// log line every interval (default 5s) through log (slog, level Info, attrs image, bytes, total,
// rate_bps, eta_s) so the serial console and an agent can parse it. total may be -1 (unknown:
// no percentage and no ETA).
//
// Unknown values are -1 in log lines (total, eta_s). A nil log in log mode writes JSON
// lines to w; with both nil nothing is written.
func NewProgress(w io.Writer, log *slog.Logger, image string, total int64, tty bool, interval time.Duration) *Progress {
	return newProgress(w, log, image, total, tty, interval, time.Now)
}

func newProgress(w io.Writer, log *slog.Logger, image string, total int64, tty bool, interval time.Duration, now func() time.Time) *Progress {
	if w == nil {
		w = io.Discard
	}
	if log == nil {
		if w == io.Discard {
			log = slog.New(slog.DiscardHandler)
		} else {
			log = slog.New(slog.NewJSONHandler(w, nil))
		}
	}
	if interval <= 0 {
		interval = defaultProgressInterval
	}
	if tty {
		interval = ttyRedraw
	}
	if total < 0 {
		total = -1
	}
	t := now()
	return &Progress{w: w, log: log, image: image, total: total, tty: tty, every: interval, now: now, start: t, lastAt: t}
}

// Reader returns a reader that counts the bytes read through r.
func (p *Progress) Reader(r io.Reader) io.Reader { return &progressReader{r: r, p: p} }

type progressReader struct {
	r io.Reader
	p *Progress
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	if n > 0 {
		pr.p.add(int64(n))
	}
	return n, err
}

func (p *Progress) add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bytes += n
	if p.done {
		return
	}
	if t := p.now(); t.Sub(p.lastAt) >= p.every {
		p.sample(t)
		p.report()
	}
}

// sample folds the rate since the last report into the smoothed rate. Weighting by
// elapsed time keeps the smoothing the same whether reports come every 200ms or 5s.
func (p *Progress) sample(t time.Time) {
	dt := t.Sub(p.lastAt).Seconds()
	inst := float64(p.bytes-p.lastBytes) / dt
	if p.rate == 0 {
		p.rate = inst
	} else {
		a := 1 - math.Exp(-dt/rateWindow.Seconds())
		p.rate += a * (inst - p.rate)
	}
	p.lastAt, p.lastBytes = t, p.bytes
}

// eta is the estimated number of seconds left, -1 when unknown.
func (p *Progress) eta() int64 {
	if p.total < 0 || p.rate <= 0 {
		return -1
	}
	return int64(math.Ceil(float64(max(p.total-p.bytes, 0)) / p.rate))
}

func (p *Progress) report() {
	if p.notify != nil {
		p.notify(p.bytes, p.total)
	}
	if !p.tty {
		p.log.Info("image progress", "image", p.image, "bytes", p.bytes, "total", p.total,
			"rate_bps", int64(p.rate), "eta_s", p.eta())
		return
	}
	var b strings.Builder
	b.WriteString(p.image + "  " + formatBytes(p.bytes))
	if p.total >= 0 {
		pct := int64(100)
		if p.total > 0 {
			pct = min(p.bytes*100/p.total, 100)
		}
		fmt.Fprintf(&b, " / %s  %d%%", formatBytes(p.total), pct)
	}
	b.WriteString("  " + formatRate(p.rate))
	if p.total >= 0 {
		b.WriteString("  ETA " + formatETA(p.eta()))
	}
	p.redraw(b.String(), "")
}

// redraw replaces the terminal line with line, then writes end.
func (p *Progress) redraw(line, end string) {
	pad := strings.Repeat(" ", max(p.width-len(line), 0))
	p.width = len(line)
	// A progress display must never fail a deploy, so write errors are ignored.
	io.WriteString(p.w, "\r"+line+pad+end)
}

// Done writes the final line: on success the totals and mean rate, on failure the error.
// Later calls do nothing.
func (p *Progress) Done(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.done = true
	if p.notify != nil && err == nil {
		p.notify(p.bytes, p.total)
	}
	elapsed := p.now().Sub(p.start)
	mean := 0.0
	if elapsed > 0 {
		mean = float64(p.bytes) / elapsed.Seconds()
	}
	secs := int64(elapsed.Round(time.Second) / time.Second)
	switch {
	case !p.tty && err == nil:
		p.log.Info("image transferred", "image", p.image, "bytes", p.bytes, "total", p.total,
			"rate_bps", int64(mean), "elapsed_s", elapsed.Seconds())
	case !p.tty:
		p.log.Error("image transfer failed", "image", p.image, "bytes", p.bytes, "total", p.total,
			"elapsed_s", elapsed.Seconds(), "err", err)
	case err == nil:
		p.redraw(fmt.Sprintf("%s  %s  done in %s  %s", p.image, formatBytes(p.bytes), formatETA(secs), formatRate(mean)), "\n")
	default:
		p.redraw(fmt.Sprintf("%s  failed after %s: %v", p.image, formatBytes(p.bytes), err), "\n")
	}
}

// formatBytes prints a size in binary units: "512 B", "1.2 GiB".
func formatBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < 5 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[i])
}

// formatRate prints a rate in SI units, as network rates are usually quoted: "110 MB/s".
func formatRate(bps float64) string {
	units := []string{"B/s", "kB/s", "MB/s", "GB/s", "TB/s"}
	i := 0
	for bps >= 1000 && i < len(units)-1 {
		bps /= 1000
		i++
	}
	if bps < 10 && i > 0 {
		return fmt.Sprintf("%.1f %s", bps, units[i])
	}
	return fmt.Sprintf("%.0f %s", bps, units[i])
}

// formatETA prints seconds as m:ss or h:mm:ss, "-:--" when unknown.
func formatETA(s int64) string {
	if s < 0 {
		return "-:--"
	}
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
