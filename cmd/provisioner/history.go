package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/spf13/cobra"
)

// historyJSON is history --json's document: every field of the entries kept by the
// filters, oldest first, and the count of the entries rotation dropped from the file.
type historyJSON struct {
	Dropped int64                     `json:"dropped"`
	Entries []bootloader.HistoryEntry `json:"entries"`
}

// historyFilter selects the entries history prints.
type historyFilter struct {
	// since keeps the entries at or after it; zero keeps all.
	since time.Time
	// image keeps the entries whose from or to image has this name; "" keeps all.
	image string
}

func newHistoryCmd(s *streams) *cobra.Command {
	var flags bootDirFlags
	var asJSON bool
	var since, image string
	cmd := &cobra.Command{
		Use:   "history [--since WHEN] [--image NAME] [--json] [--device PATH | --boot-dir DIR]",
		Short: "Print the deploys, updates, reloads, switches and trials recorded next to boot-info.json",
		Long: `history prints history.jsonl from the boot files, oldest first: one line per deploy,
update, reload, switch-default, ramdisk boot, confirm and rollback of a trial, with its time
(UTC), operation, node, the entry and image before and after (image name and the first 8
digits of its digest, else of its UUID), and the result: ok with what it did, or failed with
the error. --json prints every field of the records, the spec's digest included, and the
count of the older records dropped.

The file is bounded (1000 records, 512 KiB): past that the oldest records are dropped and
counted, and the count is printed first. --since keeps the records from a date
(2025-03-01, UTC), an RFC 3339 time, or a duration ago (24h, 90m, 7d); --image keeps the
records whose image before or after has that name: the spec's image name (os_id) or its
image_name. A rollback grub made and nothing recorded yet is recorded first, as by list.

` + bootDirHelp,
		Example: `  provisioner history
  provisioner history --since 7d --image ubuntu
  provisioner history --json --device disk.img`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := newHistoryFilter(since, image, time.Now())
			if err != nil {
				return err
			}
			o, err := flags.options(false)
			if err != nil {
				return err
			}
			h, err := engine.History(cmd.Context(), o)
			if err != nil {
				return err
			}
			if rb := h.Rollback; rb != nil && !rb.Recorded {
				// Not in the history: say it where it does not spoil the output.
				fmt.Fprintf(s.err, "warning: rollback: %s (not recorded: %s)\n", rb.Message, rb.NotRecorded)
			}
			entries := f.apply(h.Entries)
			if asJSON {
				return writeJSON(s.out, historyJSON{Dropped: h.Dropped, Entries: entries})
			}
			return writeHistoryTable(s.out, h.Dropped, entries)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: every field, and the count of dropped records")
	cmd.Flags().StringVar(&since, "since", "", "only records from this date (2025-03-01), RFC 3339 time, or duration ago (24h, 7d)")
	cmd.Flags().StringVar(&image, "image", "", "only records whose image before or after has this name (spec image name or image_name)")
	flags.bind(cmd)
	return cmd
}

// newHistoryFilter builds the filter of --since and --image; now is what a duration counts
// back from.
func newHistoryFilter(since, image string, now time.Time) (historyFilter, error) {
	f := historyFilter{image: image}
	if since != "" {
		t, err := parseSince(since, now)
		if err != nil {
			return f, err
		}
		f.since = t
	}
	return f, nil
}

// parseSince reads --since: a duration back from now (Go's syntax, 24h or 90m, or whole
// days, 7d), an RFC 3339 time, or a date, midnight UTC.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, engine.Usagef("--since %s: a duration back from now must not be negative", s)
		}
		return now.Add(-d), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, engine.Usagef("--since %q: want a date (2025-03-01), an RFC 3339 time (2025-03-01T12:00:00Z) or a duration ago (24h, 7d)", s)
}

// apply returns the entries f keeps, in their order; never nil, so that JSON prints [].
func (f historyFilter) apply(entries []bootloader.HistoryEntry) []bootloader.HistoryEntry {
	out := []bootloader.HistoryEntry{}
	for _, e := range entries {
		if !f.since.IsZero() && e.Time.Before(f.since) {
			continue
		}
		if f.image != "" && !hasImage(e, f.image) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// hasImage reports whether the image before or after e is name: an entry's os_id (the
// spec's image name) or an image's image_name.
func hasImage(e bootloader.HistoryEntry, name string) bool {
	names := []string{e.From, e.To}
	for _, v := range []*bootloader.ImageVersion{e.FromImage, e.ToImage} {
		if v != nil {
			names = append(names, v.ImageName)
		}
	}
	for _, c := range e.Images {
		names = append(names, c.Name)
		for _, v := range []*bootloader.ImageVersion{c.From, c.To} {
			if v != nil {
				names = append(names, v.ImageName)
			}
		}
	}
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// writeHistoryTable prints entries as history's table, newest last, after a line counting
// the dropped records when there are any.
func writeHistoryTable(w io.Writer, dropped int64, entries []bootloader.HistoryEntry) error {
	if dropped > 0 {
		fmt.Fprintf(w, "(%d older records dropped to keep the history small)\n", dropped)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tOPERATION\tNODE\tFROM -> TO\tRESULT")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Operation, dash(e.Node), fromTo(e), resultText(e))
	}
	return tw.Flush()
}

// resultText is the table's result: "ok", "ok; <detail>" or "failed: <error>", on one line.
func resultText(e bootloader.HistoryEntry) string {
	s := e.Result
	switch {
	case e.Error != "":
		s += ": " + e.Error
	case e.Detail != "":
		s += "; " + e.Detail
	}
	return strings.Join(strings.Fields(s), " ")
}

// fromTo is the table's FROM -> TO: each image of a deploy or update, else the entries and
// their images before and after.
func fromTo(e bootloader.HistoryEntry) string {
	if len(e.Images) > 0 {
		var parts []string
		for _, c := range e.Images {
			if c.From == nil && c.To == nil {
				parts = append(parts, c.Name) // an image of unknown version
				continue
			}
			parts = append(parts, c.Name+": "+imageChange(c.From, c.To))
		}
		return strings.Join(parts, ", ")
	}
	if e.From != "" && e.From == e.To && (e.FromImage != nil || e.ToImage != nil) {
		// One entry whose image changed (a reload), or did not: an image unknown is "-".
		if e.FromImage != nil && e.ToImage != nil && *e.FromImage == *e.ToImage {
			return e.From + ": " + version(e.ToImage)
		}
		return e.From + ": " + versionOrDash(e.FromImage) + " -> " + versionOrDash(e.ToImage)
	}
	return side(e.From, e.FromImage) + " -> " + side(e.To, e.ToImage)
}

// imageChange is "A -> B" for a replaced image, "B" for an added one (or one unchanged),
// "A removed" for a removed one.
func imageChange(from, to *bootloader.ImageVersion) string {
	switch {
	case from == nil && to == nil:
		return "-"
	case from == nil, to != nil && *from == *to:
		return version(to)
	case to == nil:
		return version(from) + " removed"
	}
	return version(from) + " -> " + version(to)
}

// side is an entry of the table's FROM -> TO: its os_id, with its image in parentheses.
func side(osID string, v *bootloader.ImageVersion) string {
	if v == nil {
		return dash(osID)
	}
	if osID == "" {
		return version(v)
	}
	return osID + " (" + version(v) + ")"
}

// versionOrDash is version, or "-" for an unknown image.
func versionOrDash(v *bootloader.ImageVersion) string {
	if v == nil {
		return "-"
	}
	return version(v)
}

// version is an image as the table shows it: its name and a short id.
func version(v *bootloader.ImageVersion) string {
	id := shortID(v)
	switch {
	case v.ImageName == "":
		return dash(id)
	case id == "":
		return v.ImageName
	}
	return v.ImageName + " " + id
}

// shortID is the first 8 hex digits of v's digest (after "sha256:"), else of its UUID.
func shortID(v *bootloader.ImageVersion) string {
	id := v.Digest
	if _, hex, ok := strings.Cut(id, ":"); ok {
		id = hex
	}
	if id == "" {
		id = v.ImageUUID
	}
	if len(id) > 8 {
		id = id[:8]
	}
	return id
}
