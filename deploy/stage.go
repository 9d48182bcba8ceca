package deploy

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/partition"
)

// Stage puts the image im into the existing directory dir with the deploy's own steps,
// minus the filesystems: it streams the image, sniffs its format, extracts a tar (or
// copies an rsync source's tree), verifies the checksum at the end of the stream, and
// syncs dir's filesystem. A live reload stages the new root this way before it touches
// the running one. A raw image is refused, since it is a filesystem and not a tree of
// files to sync. Errors name the image and are classified as Deploy's.
func (d *Deployer) Stage(ctx context.Context, im *partition.Image, dir string) (err error) {
	dp := &deployment{d: d, im: im, log: d.Log, root: dir}
	if dp.log == nil {
		dp.log = slog.New(slog.DiscardHandler)
	}
	if im.Target != "/" {
		return nameImage(im, fmt.Errorf("staging needs a whole-OS image (target /), not one into %s", im.Target))
	}
	defer func() { dp.endTransfer(err) }()
	steps := []func(context.Context) error{dp.open, dp.refuseRaw, dp.extract, dp.drain}
	if _, isRsync, _ := rsyncSource(im.URL); isRsync {
		steps = []func(context.Context) error{dp.syncTree}
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return nameImage(im, err)
		}
	}
	if err := disk.SyncFS(dir); err != nil {
		return nameImage(im, classify(ctx, deviceFault, err))
	}
	return nil
}

// refuseRaw refuses a raw image for staging.
func (dp *deployment) refuseRaw(context.Context) error {
	if dp.format.Payload == "raw" {
		return blame(ErrImage, fmt.Errorf("a raw image (%s) is a filesystem, not a tree of files: it cannot be synced into a running root; use a tar image, or reload through the deploy ramdisk", dp.format))
	}
	return nil
}
