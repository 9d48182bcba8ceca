package bootloader

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/provisioner/provisioner/internal/confine"
)

// Bounds of history.jsonl. The multiboot partition is 100 MiB and holds kernels and
// initrds, so the history must stay small whatever the node's life: at most
// HistoryMaxEntries entries and HistoryMaxBytes bytes. An append that would pass either
// rotates the file down to three quarters of both (historyKeepEntries, historyKeepBytes),
// so that rotation rewrites the file once every few hundred appends, not at each one. A
// record is 200 to 600 bytes (a deploy of several images more), so the byte bound is the
// one reached first when records carry images.
const (
	HistoryMaxEntries  = 1000
	HistoryMaxBytes    = 512 << 10
	historyKeepEntries = HistoryMaxEntries * 3 / 4
	historyKeepBytes   = HistoryMaxBytes * 3 / 4
)

// maxHistoryText bounds an entry's Error and Detail: an error that quotes a program's
// whole stderr must not take the room of hundreds of records.
const maxHistoryText = 4 << 10

// AppendHistory appends entries to history.jsonl under dir, one JSON line each, in one
// write, and fsyncs. Each entry is completed first (see fill): a zero Time is now (UTC), an
// empty Node is NodeName's, an empty SpecDigest is the plan record's, an empty Result is
// ResultOK (ResultFailed with an Error), and Error and Detail are cut to 4 KiB.
//
// A torn last line left by an earlier power cut is cut off before appending: appended after
// it, the new record would be glued onto the fragment and lost with it. The fragment holds
// no complete record, so nothing ReadHistory would return is removed.
//
// When the file would pass HistoryMaxEntries or HistoryMaxBytes, it is rotated instead:
// the oldest entries are dropped until what is kept, the new entries included, fits three
// quarters of both bounds, and the first line {"dropped": N} counts every entry dropped so
// far. The rotated file is written whole and renamed over the old one (as WriteFileAtomic),
// so that a power cut leaves the old file or the new one, never a part.
func AppendHistory(dir string, entries ...HistoryEntry) error {
	d, err := confine.Open(dir)
	if err != nil {
		return fmt.Errorf("appending to history: %w", err)
	}
	defer d.Close()
	return appendHistory(d, nil, entries...)
}

// appendHistory appends entries to history.jsonl in the boot directory d, as
// AppendHistory; hook is passed to the rotation's WriteFileAtomic (tests).
func appendHistory(d *confine.Dir, hook func(step string) error, entries ...HistoryEntry) error {
	path := d.Path(HistoryPath)
	var add []byte
	for _, e := range entries {
		e.fill(d)
		line, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("appending to history %s: %w", path, err)
		}
		add = append(append(add, line...), '\n')
	}
	// Opened inside d, never through a symlink, and only when it is a regular file: a
	// history.jsonl that an image planted as a device node or a link to a host file must not
	// receive the line.
	f, err := d.OpenAppend(HistoryPath, bootFilePerm)
	if err != nil {
		return fmt.Errorf("appending to history: %w", err)
	}
	defer f.Close()
	old, err := readComplete(f)
	if err != nil {
		return fmt.Errorf("appending to history %s: %w", path, err)
	}
	if overBounds(old, add) {
		data := rotateHistory(old, add, historyKeepEntries, historyKeepBytes)
		if err := d.WriteFileAtomic(HistoryPath, data, d.Mode(HistoryPath, bootFilePerm), hook); err != nil {
			return fmt.Errorf("rotating history: %w", err)
		}
		return nil
	}
	return writeAppend(f, path, add)
}

// writeAppend appends add to f, fsyncs and closes it.
func writeAppend(f *os.File, path string, add []byte) error {
	// One write of the whole lines: a power cut can tear only them, at the end.
	if _, err := f.Write(add); err != nil {
		return fmt.Errorf("appending to history %s: %w", path, err)
	}
	// Without fsync a power cut soon after a switch could lose the record of it.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("appending to history %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("appending to history %s: %w", path, err)
	}
	return nil
}

// fill completes e as AppendHistory describes, reading the plan record in d when e has no
// SpecDigest.
func (e *HistoryEntry) fill(d *confine.Dir) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.Node == "" {
		e.Node = NodeName()
	}
	if e.SpecDigest == "" {
		e.SpecDigest = recordSpecDigest(d)
	}
	if e.Result == "" {
		e.Result = ResultOK
		if e.Error != "" {
			e.Result = ResultFailed
		}
	}
	e.Error, e.Detail = cutText(e.Error), cutText(e.Detail)
}

// cutText cuts s to maxHistoryText bytes on a character boundary, saying so.
func cutText(s string) string {
	if len(s) <= maxHistoryText {
		return s
	}
	const more = " [cut]"
	n := maxHistoryText - len(more)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + more
}

// readComplete returns the content of f up to its last newline, and cuts a torn last line
// (one without a newline) off the file.
func readComplete(f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxHistory {
		return nil, fmt.Errorf("%d bytes: larger than any history the provisioner writes (%d bytes at most)", fi.Size(), HistoryMaxBytes)
	}
	data, err := io.ReadAll(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return nil, err
	}
	complete := data[:bytes.LastIndexByte(data, '\n')+1]
	if len(complete) < len(data) {
		if err := f.Truncate(int64(len(complete))); err != nil {
			return nil, err
		}
	}
	return complete, nil
}

// overBounds reports whether appending add to old (complete lines) passes
// HistoryMaxEntries or HistoryMaxBytes. It counts lines, the header and blank lines
// included: at worst a rotation comes a few appends early.
func overBounds(old, add []byte) bool {
	return len(old)+len(add) > HistoryMaxBytes ||
		bytes.Count(old, []byte{'\n'})+bytes.Count(add, []byte{'\n'}) > HistoryMaxEntries
}

// splitHistory splits complete lines of history.jsonl into the header's dropped count and
// the entries' lines (each with its newline); blank lines are left out.
func splitHistory(data []byte) (dropped int64, lines [][]byte) {
	for first := true; len(data) > 0; first = false {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			nl = len(data) - 1
		}
		line := data[:nl+1]
		data = data[nl+1:]
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if first {
			if h, ok := parseHeader(line); ok {
				dropped = h.Dropped
				continue
			}
		}
		lines = append(lines, line)
	}
	return dropped, lines
}

// rotateHistory returns the rotated content of a history whose complete lines are old,
// with the lines add appended: the newest entries that fit keepEntries and keepBytes (the
// newest one always), after a header counting the entries dropped, the earlier ones
// included.
func rotateHistory(old, add []byte, keepEntries, keepBytes int) []byte {
	dropped, lines := splitHistory(old)
	_, more := splitHistory(add)
	lines = append(lines, more...)
	// The header's room: the count can only grow by the lines dropped now.
	room := keepBytes - len(header(dropped+int64(len(lines))))
	first, size := len(lines), 0
	for first > 0 && len(lines)-first < keepEntries {
		n := len(lines[first-1])
		if size+n > room && first < len(lines) {
			break
		}
		size += n
		first--
	}
	dropped += int64(first)
	out := header(dropped)
	for _, l := range lines[first:] {
		out = append(out, l...)
	}
	return out
}

// header is the first line of a rotated history: {"dropped":N} and a newline.
func header(dropped int64) []byte {
	return []byte(`{"dropped":` + strconv.FormatInt(dropped, 10) + "}\n")
}
