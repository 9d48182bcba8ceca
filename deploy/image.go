package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
)

// Deployer puts images into their roots on disks that the partition step prepared.
type Deployer struct {
	Fetcher      *Fetcher
	Decompressor Decompressor
	Run          run.Runner
	Sys          disk.Sys
	// Out receives progress: a redrawn line when TTY, else log lines through Log.
	Out io.Writer
	TTY bool
	Log *slog.Logger
	// TmpDir holds the private mount roots ("" is the system's temporary directory).
	TmpDir string
	// ProgressInterval is the period of progress log lines (0: 5 s).
	ProgressInterval time.Duration
	// OnProgress, when set, gets each progress report of an image's transfer (bytes so far,
	// total or -1), at the progress interval and once at the end; it must not block.
	OnProgress func(image string, done, total int64)
	// Inspect, when set, is called once an image is in place and verified, with its tree
	// still mounted at root: the bootloader step reads the image's kernels there, so the
	// volumes need not be mounted twice. Its error fails the image.
	Inspect func(ctx context.Context, im *partition.Image, root string) error

	// digests holds what ResolveDigests found, by image name.
	digests map[string]Digest
}

// ResolveDigests fetches and parses the checksum (file) of every image now, so that a
// deploy can do it before it writes anything; Deploy then uses what was found instead
// of fetching again. Errors are image errors, like Deploy's.
func (d *Deployer) ResolveDigests(ctx context.Context, images []*partition.Image) error {
	found := map[string]Digest{}
	for _, im := range images {
		digest, err := d.Fetcher.ResolveDigest(ctx, im.Checksum, im.URL)
		if err != nil {
			return classify(ctx, streamFault, fmt.Errorf("image %s: %w", im.Name, err))
		}
		found[im.Name] = digest
	}
	d.digests = found
	return nil
}

// Deploy deploys one image: it mounts every volume bound to the image into a private
// temporary root (shallowest first), streams the image into its target (tar extracted,
// raw written block-wise before mounting), verifies its checksum while streaming, writes
// the image's /etc/fstab from the plan, and unmounts in reverse order, also on failure.
// Its errors match ErrImage when the image is at fault (fetch, checksum, format,
// decompression, truncation, an entry the tree cannot take) and ErrWrite when a target
// filesystem or device failed, filled up or is read-only; while ctx is done they match
// neither.
func (d *Deployer) Deploy(ctx context.Context, l *partition.Layout, im *partition.Image, devs partition.Devices) (err error) {
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	byUUID := map[string]partition.FSDevice{}
	for _, t := range partition.FilesystemDevices(l, devs) {
		byUUID[t.FS.UUID] = t
	}
	for _, m := range im.Mounts {
		if _, ok := byUUID[m.FSUUID]; !ok {
			return fmt.Errorf("image %s: no device for the filesystem mounted at %s", im.Name, m.Path)
		}
	}

	digest, ok := d.digests[im.Name]
	if !ok {
		if digest, err = d.Fetcher.ResolveDigest(ctx, im.Checksum, im.URL); err != nil {
			return classify(ctx, streamFault, fmt.Errorf("image %s: %w", im.Name, err))
		}
	}
	// The transfer has its own context: on any failure it is cancelled first, so the
	// read-ahead goroutine is never left waiting on the network while we clean up.
	streamCtx, cancelStream := context.WithCancel(ctx)
	defer cancelStream()
	stream, err := d.Fetcher.Open(streamCtx, im.URL)
	if err != nil {
		return classify(ctx, streamFault, fmt.Errorf("image %s: %w", im.Name, err))
	}
	defer stream.Close()
	prog := NewProgress(d.out(), log, im.Name, stream.Size(), d.TTY, d.ProgressInterval)
	if d.OnProgress != nil {
		prog.Notify(func(done, total int64) { d.OnProgress(im.Name, done, total) })
	}
	defer func() { prog.Done(err) }()
	verified := Verify(prog.Reader(stream), digest, im.URL)
	format, sniffed, err := Sniff(streamCtx, verified, d.Decompressor)
	if err != nil {
		return classify(ctx, streamFault, fmt.Errorf("image %s (%s): %w", im.Name, im.URL, err))
	}
	if im.Format != "" && im.Format != format.String() {
		return blame(ErrImage, fmt.Errorf("image %s: the spec says format %s, the data is %s", im.Name, im.Format, format))
	}
	decoded, err := d.Decompressor.Open(streamCtx, sniffed, format.Compression)
	if err != nil {
		return classify(ctx, streamFault, fmt.Errorf("image %s: %w", im.Name, err))
	}
	defer decoded.Close()
	// 8 × 1 MiB in flight: fetch and decompression run ahead of the disk writes.
	ahead := newReadAhead(decoded, 1<<20, 8)
	defer func() {
		if err != nil {
			cancelStream()
		}
		ahead.Close()
	}()
	var payload io.Reader = ahead

	var raw RawResult
	if format.Payload == "raw" {
		target := im.MountAt(im.Target)
		if target == nil {
			return fmt.Errorf("image %s: raw image, but no filesystem is mounted at its target %s", im.Name, im.Target)
		}
		t := byUUID[target.FSUUID]
		if raw, err = WriteRaw(ctx, d.Run, d.Sys, payload, t.Dev, t.FS); err != nil {
			return fmt.Errorf("image %s: %w", im.Name, err)
		}
		log.Info("raw image written", "image", im.Name, "device", t.Dev, "written", raw.Written, "skipped_zero", raw.Skipped)
	}

	root, err := os.MkdirTemp(d.TmpDir, "provisioner-"+im.Name+"-")
	if err != nil {
		return fmt.Errorf("image %s: %w", im.Name, err)
	}
	var mounted []string
	defer func() {
		// Unmount in reverse, whatever happened; a failure to unmount is reported, since
		// it leaves the disk held.
		unmounted := true
		for i := len(mounted) - 1; i >= 0; i-- {
			if serr := disk.SyncFS(mounted[i]); serr != nil && err == nil {
				err = classify(ctx, deviceFault, fmt.Errorf("image %s: %w", im.Name, serr))
			}
			if uerr := disk.Unmount(context.WithoutCancel(ctx), mounted[i]); uerr != nil {
				unmounted = false
				if err == nil {
					err = uerr
				}
			}
		}
		// Once everything is unmounted the root is an empty directory. Never RemoveAll:
		// with a mount left behind it would delete the deployed files.
		if unmounted {
			os.Remove(root)
		}
	}()
	for _, m := range im.Mounts {
		// The tree may already hold a filesystem written from a raw image or kept from an
		// earlier deploy: a symlink there (boot -> /) would make the mount land on the host.
		dir, err := confine.MakeDir(root, m.Path)
		if err != nil {
			return classify(ctx, treeFault, fmt.Errorf("image %s: creating mount point %s: %w", im.Name, m.Path, err))
		}
		if err := disk.Mount(ctx, byUUID[m.FSUUID].Dev, dir, m.FSType, ""); err != nil {
			return fmt.Errorf("image %s: %w", im.Name, err)
		}
		mounted = append(mounted, dir)
		if raw.GrowAfterMount && m.Path == im.Target {
			if _, err := d.Run.Run(ctx, run.Cmd{Argv: []string{"xfs_growfs", dir}}); err != nil {
				return fmt.Errorf("image %s: growing %s: %w", im.Name, m.Path, err)
			}
		}
	}

	if format.Payload == "tar" {
		dest, err := confine.MakeDir(root, im.Target)
		if err != nil {
			return classify(ctx, treeFault, fmt.Errorf("image %s: %w", im.Name, err))
		}
		stats, err := ExtractTar(ctx, payload, dest, ExtractOptions{Sparse: true, Log: log})
		if err != nil {
			return fmt.Errorf("image %s: %w", im.Name, err)
		}
		log.Info("image extracted", "image", im.Name, "files", stats.Files, "dirs", stats.Dirs, "bytes", stats.Bytes)
	}
	// Read what the payload and the transfer have left (tar padding, trailing bytes of
	// the compressed stream): only at the very end are the byte count and the checksum
	// known good.
	if _, err := io.Copy(io.Discard, payload); err != nil {
		return classify(ctx, streamFault, fmt.Errorf("image %s: %w", im.Name, err))
	}
	if err := decoded.Close(); err != nil {
		return classify(ctx, streamFault, fmt.Errorf("image %s: %w", im.Name, err))
	}
	if _, err := io.Copy(io.Discard, verified); err != nil {
		return classify(ctx, streamFault, fmt.Errorf("image %s: %w", im.Name, err))
	}
	if im.Target == "/" {
		if err := writeFstab(root, im.Fstab); err != nil {
			return classify(ctx, treeFault, fmt.Errorf("image %s: %w", im.Name, err))
		}
	}
	if d.Inspect != nil {
		if err := d.Inspect(ctx, im, root); err != nil {
			return err
		}
	}
	return nil
}

func (d *Deployer) out() io.Writer {
	if d.Out == nil {
		return io.Discard
	}
	return d.Out
}

// writeFstab replaces the image's /etc/fstab with the plan's, atomically (a new temporary
// file, fsync, rename). Everything is confined to the image root: etc must be a real
// directory, the temporary file is created exclusively (a device node or FIFO the image
// planted is never opened) and the rename replaces whatever etc/fstab was. An image without
// /etc (a utility image, or a bare tree) gets none.
func writeFstab(root, content string) error {
	d, err := confine.Open(root)
	if err != nil {
		return fmt.Errorf("writing fstab: %w", err)
	}
	defer d.Close()
	fi, err := d.Lstat("etc")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("writing fstab: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink == 0 && !fi.IsDir() {
		return nil
	}
	if err := d.WriteFileAtomic("etc/fstab", []byte(content), 0o644, nil); err != nil {
		return fmt.Errorf("writing fstab: %w", err)
	}
	return nil
}
