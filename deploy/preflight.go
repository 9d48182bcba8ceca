package deploy

import (
	"context"
	"fmt"

	"github.com/provisioner/provisioner/partition"
)

// Digest returns the checksum ResolveDigests or Preflight found for the image named name,
// as "algo:hex"; "" when there is none (no checksum given, or not resolved yet).
func (d *Deployer) Digest(name string) string {
	return d.digests[name].String()
}

// Preflight checks, before anything is written, that im can be deployed: its checksum
// (file) resolves, its source opens, and the stream's first bytes are a format the
// deployer reads and the one im names, if any. The stream is closed again; Deploy opens it
// anew, using the digest found here. A reload runs it before it re-creates the image's
// filesystems, so that a 404, a wrong format or a missing checksum line fails with
// nothing written. Errors name the image and match ErrImage when the image is at fault.
func (d *Deployer) Preflight(ctx context.Context, im *partition.Image) error {
	if err := d.ResolveDigests(ctx, []*partition.Image{im}); err != nil {
		return err
	}
	if _, isRsync, _ := rsyncSource(im.URL); isRsync {
		// ResolveDigests asked the daemon for the tree already.
		return nil
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := d.Fetcher.Open(sctx, im.URL)
	if err != nil {
		return nameImage(im, classify(ctx, streamFault, err))
	}
	defer stream.Close()
	format, _, err := Sniff(sctx, stream, d.Decompressor)
	if err != nil {
		return nameImage(im, &formatError{classify(ctx, streamFault, err)})
	}
	if im.Format != "" && im.Format != format.String() {
		return nameImage(im, blame(ErrImage, fmt.Errorf("the format given is %s, the data is %s", im.Format, format)))
	}
	return nil
}
