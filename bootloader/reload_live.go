package bootloader

import (
	"context"
	"fmt"

	"github.com/provisioner/provisioner/partition"
)

// LiveReloaded is what a live reload put in place of the running image's root.
type LiveReloaded struct {
	// GrubID is the element reloaded.
	GrubID int
	// ImageName ("" keeps the recorded one), ImageUUID and Digest describe the new image.
	ImageName, ImageUUID, Digest string
	// Record is the plan record with the image's new source.
	Record *partition.Record
	// From and To say which image was replaced by which, for the history.
	From, To ImageVersion
	// Result is what the history's record says the sync did (its Detail).
	Result string
}

// CommitLiveReload records a live reload: the running root was synced to a new image of
// the same kernel, so the menu and grubenv stay as they are (the same entry boots the same
// kernel); the plan record, boot-info.json (the element's image_name, image_uuid and
// digest, its state cleared) and the history record "reload-live" with both versions are
// written in Commit's order. It returns the boot info written.
func CommitLiveReload(ctx context.Context, dir string, r LiveReloaded) (*BootInfo, error) {
	files, err := readBootFiles(dir)
	if err != nil {
		return nil, err
	}
	defer files.close()
	bi := files.bi
	el := elementByID(bi, r.GrubID)
	if el == nil {
		return nil, fmt.Errorf("reload --live: boot info has no grub_id %d", r.GrubID)
	}
	if r.ImageName != "" {
		el.ImageName = r.ImageName
	}
	el.ImageUUID, el.Digest, el.State, el.StateError = r.ImageUUID, r.Digest, "", ""
	from, to := r.From, r.To
	s := State{
		Info: bi, Record: r.Record,
		History: &HistoryEntry{Operation: "reload-live", From: el.OSID, To: el.OSID, Result: ResultOK, Detail: r.Result, FromImage: &from, ToImage: &to},
	}
	if err := Commit(ctx, files.d, s, CommitOptions{}); err != nil {
		return nil, fmt.Errorf("reload --live: committing the boot files in %s: %w", dir, err)
	}
	return bi, nil
}
