package bootloader

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/provisioner/provisioner/internal/confine"
)

// maxHistory bounds what ReadHistory reads. Rotation keeps the file under
// HistoryMaxBytes, so a file beyond this is not one the provisioner wrote, and reading it
// whole must not exhaust a ramdisk's memory.
const maxHistory = 64 << 20

// Results of an operation (HistoryEntry.Result).
const (
	ResultOK     = "ok"
	ResultFailed = "failed"
)

// HistoryEntry is one line of history.jsonl: one operation on the node's boot files.
//
// Every deploy, update, reload (and reload-live), switch-default, boot-ramdisk, confirm and
// rollback appends one. A reload or update that arms a trial records it in its own entry
// (Tries); the trial ends in a later "confirm" or "rollback" entry. A confirm that finds
// nothing to confirm changes nothing and records nothing.
//
// An "update" entry (a changed spec applied to a deployed node) has SpecDigest of the new
// spec and one ImageChange in Images per image the update touched: From and To for an
// updated image, only To for an added one, only From for a removed one; From and To name
// the default entry before and after, Detail the break-down's one-line summary.
//
// Lines written before Result was only "ok" or "failed" held the error text (or a sentence)
// in result; ReadHistory moves it to Error or Detail (see normalizeLegacy).
type HistoryEntry struct {
	// Time is when the operation ended (UTC); AppendHistory sets a zero one to now.
	Time time.Time `json:"time"`
	// Node names the machine the operation ran on (NodeName); AppendHistory fills it in.
	Node string `json:"node,omitempty"`
	// Operation is "deploy", "update", "reload", "reload-live", "switch-default",
	// "switch-default --once", "boot-ramdisk", "boot-ramdisk --once", "confirm" or
	// "rollback".
	Operation string `json:"operation"`
	// From and To are the os_id (the spec's image name) of the entry before and after: the
	// default for a switch or confirm, the reloaded entry for a reload.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Result is ResultOK or ResultFailed.
	Result string `json:"result"`
	// Error is the failure's text, "" when the operation succeeded.
	Error string `json:"error,omitempty"`
	// Detail says in a few words what an operation did besides its result ("unchanged:
	// already the default", "default moved from alpha to beta while alpha is reloaded").
	Detail string `json:"detail,omitempty"`
	// SpecDigest is the digest of the spec the node was deployed or updated with
	// (SpecDigest): the operation's own spec, else the plan record's; "" when neither is
	// known (a node deployed before the record existed).
	SpecDigest string `json:"spec_digest,omitempty"`
	// FromImage and ToImage are the images of From and To, nil when unknown.
	FromImage *ImageVersion `json:"from_image,omitempty"`
	ToImage   *ImageVersion `json:"to_image,omitempty"`
	// Images lists the images an operation on several images (a deploy, an update)
	// installed, replaced or removed, in the spec's order.
	Images []ImageChange `json:"images,omitempty"`
	// Tries is the number of boots of the trial the operation armed, 0 for none.
	Tries int `json:"tries,omitempty"`
}

// ImageVersion identifies what an image's root holds: the image's name and UUID as the
// spec or the reload gave them, and the verified digest of its stream.
type ImageVersion struct {
	ImageName string `json:"image_name,omitempty"`
	ImageUUID string `json:"image_uuid,omitempty"`
	Digest    string `json:"digest,omitempty"`
}

// ImageChange is one image of a deploy or update: the version it had before (nil when
// the operation added it) and the one it has after (nil when it removed it).
type ImageChange struct {
	// Name is the spec's image name (the entry's os_id).
	Name string        `json:"name"`
	From *ImageVersion `json:"from,omitempty"`
	To   *ImageVersion `json:"to,omitempty"`
}

// HistoryLog is what ReadHistory reads: the entries kept and how many older ones rotation
// dropped.
type HistoryLog struct {
	// Dropped counts the entries rotation removed, oldest first, over the file's life.
	Dropped int64 `json:"dropped"`
	// Entries are the entries kept, oldest first.
	Entries []HistoryEntry `json:"entries"`
}

// historyHeader is the first line of a rotated history.jsonl: the count of entries dropped.
// It has no "operation", which tells it from an entry.
type historyHeader struct {
	Dropped int64 `json:"dropped"`
}

// ReadHistory reads history.jsonl under dir, oldest first; no file is no history. A first
// line {"dropped": N} (see AppendHistory's rotation) gives HistoryLog.Dropped. A last line
// without a newline is an append cut short by a power cut and is skipped; any other line
// that does not parse is an error, since only tampering or disk corruption produces one.
// Lines of older versions are read too (normalizeLegacy).
func ReadHistory(dir string) (HistoryLog, error) {
	path := filepath.Join(dir, HistoryPath)
	d, err := confine.Open(dir)
	if err != nil {
		return HistoryLog{}, fmt.Errorf("reading history: %w", err)
	}
	defer d.Close()
	data, err := d.ReadFile(HistoryPath, maxHistory)
	if errors.Is(err, fs.ErrNotExist) {
		return HistoryLog{}, nil
	}
	if err != nil {
		return HistoryLog{}, fmt.Errorf("reading history: %w", err)
	}
	log, err := parseHistory(data)
	if err != nil {
		return log, fmt.Errorf("reading history %s: %w", path, err)
	}
	return log, nil
}

// parseHistory parses the content of history.jsonl as ReadHistory describes.
func parseHistory(data []byte) (HistoryLog, error) {
	var log HistoryLog
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
		if n == 1 {
			if h, ok := parseHeader(line); ok {
				log.Dropped = h.Dropped
				continue
			}
		}
		var e HistoryEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return log, fmt.Errorf("line %d: %w", n, err)
		}
		normalizeLegacy(&e)
		log.Entries = append(log.Entries, e)
	}
	return log, nil
}

// parseHeader reports whether line is a rotation header: an object with "dropped" and no
// "operation".
func parseHeader(line []byte) (historyHeader, bool) {
	var probe struct {
		Dropped   *int64  `json:"dropped"`
		Operation *string `json:"operation"`
	}
	if json.Unmarshal(line, &probe) != nil || probe.Dropped == nil || probe.Operation != nil || *probe.Dropped < 0 {
		return historyHeader{}, false
	}
	return historyHeader{Dropped: *probe.Dropped}, true
}

// normalizeLegacy rewrites an entry written before Result was only ResultOK or
// ResultFailed, when result held "ok; <detail>", "unchanged: ...", a sentence of a
// rollback, a ramdisk boot or a moved default, or an error's text: a result that starts
// with "ok" or "unchanged", and every result of the operations that recorded only what they
// did (rollback, reload-live, boot-ramdisk, a reload's moved default), become ResultOK with the rest as Detail; any other becomes ResultFailed with the text as
// Error.
func normalizeLegacy(e *HistoryEntry) {
	r := e.Result
	if r == ResultOK || r == ResultFailed || e.Error != "" || e.Detail != "" {
		return
	}
	switch {
	case strings.HasPrefix(r, "ok"):
		e.Result, e.Detail = ResultOK, strings.TrimLeft(strings.TrimPrefix(r, "ok"), ";: ")
	case strings.HasPrefix(r, "unchanged"),
		e.Operation == "rollback", e.Operation == "reload-live",
		strings.HasPrefix(e.Operation, "boot-ramdisk"),
		e.Operation == "reload" && strings.HasPrefix(r, "default moved"):
		e.Result, e.Detail = ResultOK, r
	default:
		e.Result, e.Error = ResultFailed, r
	}
}
