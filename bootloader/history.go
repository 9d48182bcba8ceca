package bootloader

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/provisioner/provisioner/internal/confine"
)

// maxHistory bounds what ReadHistory reads: a line is about 200 bytes, so this is hundreds
// of thousands of deploys and switches, and a file beyond it is not ours.
const maxHistory = 64 << 20

// HistoryEntry is one line of history.jsonl.
type HistoryEntry struct {
	Time      time.Time `json:"time"`
	Operation string    `json:"operation"` // "deploy", "reload", "switch-default", "switch-default --once", ...
	From      string    `json:"from,omitempty"`
	To        string    `json:"to,omitempty"`
	Result    string    `json:"result"` // "ok" or the error text
	// FromImage and ToImage say which image a reload replaced by which, nil otherwise.
	FromImage *ImageVersion `json:"from_image,omitempty"`
	ToImage   *ImageVersion `json:"to_image,omitempty"`
}

// ImageVersion identifies what an image's root holds: the image's name and UUID as the
// spec or the reload gave them, and the verified digest of its stream.
type ImageVersion struct {
	ImageName string `json:"image_name,omitempty"`
	ImageUUID string `json:"image_uuid,omitempty"`
	Digest    string `json:"digest,omitempty"`
}

// AppendHistory appends one JSON line to history.jsonl under dir and fsyncs; a torn last line
// (power cut mid-append) is tolerated by ReadHistory, which skips it. A zero Time is set to
// now (UTC), so callers need not remember to.
//
// Before appending, a torn last line left by an earlier power cut is cut off: appended after
// it, the new record would be glued onto the fragment and lost with it. The fragment holds
// no complete record, so nothing ReadHistory would return is removed.
func AppendHistory(dir string, e HistoryEntry) error {
	d, err := confine.Open(dir)
	if err != nil {
		return fmt.Errorf("appending to history: %w", err)
	}
	defer d.Close()
	return appendHistory(d, e)
}

// appendHistory appends e to history.jsonl in the boot directory d, as AppendHistory.
func appendHistory(d *confine.Dir, e HistoryEntry) error {
	path := d.Path(HistoryPath)
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("appending to history %s: %w", path, err)
	}
	line = append(line, '\n')
	// Opened inside d, never through a symlink, and only when it is a regular file: a
	// history.jsonl that an image planted as a device node or a link to a host file must not
	// receive the line.
	f, err := d.OpenAppend(HistoryPath, bootFilePerm)
	if err != nil {
		return fmt.Errorf("appending to history: %w", err)
	}
	defer f.Close()
	if err := cutTornTail(f); err != nil {
		return fmt.Errorf("appending to history %s: %w", path, err)
	}
	// One write of the whole line: a power cut can tear only this line, at the end.
	if _, err := f.Write(line); err != nil {
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

// cutTornTail truncates f after its last newline when it does not end with one.
func cutTornTail(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, size-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	// The history is small (a line per deploy or switch), so reading it whole is fine.
	data, err := io.ReadAll(io.NewSectionReader(f, 0, size))
	if err != nil {
		return err
	}
	return f.Truncate(int64(bytes.LastIndexByte(data, '\n') + 1))
}

// ReadHistory returns the entries of history.jsonl under dir, oldest first; no file is no
// history. A last line without a newline is an append cut short by a power cut and is
// skipped; any other line that does not parse is an error, since only tampering or disk
// corruption produces one.
func ReadHistory(dir string) ([]HistoryEntry, error) {
	path := filepath.Join(dir, HistoryPath)
	d, err := confine.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	defer d.Close()
	data, err := d.ReadFile(HistoryPath, maxHistory)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	var entries []HistoryEntry
	for n := 1; len(data) > 0; n++ {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			break // torn last line
		}
		line := data[:nl]
		data = data[nl+1:]
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e HistoryEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return entries, fmt.Errorf("reading history %s: line %d: %w", path, n, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}
