package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"sort"
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
	// volumes need not be mounted twice. Its error fails the image as it is, so it names
	// the image itself.
	Inspect func(ctx context.Context, im *partition.Image, root string) error
	// NodeToolsBinary is the provisioner program installed into the images that ask for
	// the node tools; it must be statically linked. "" is the running program.
	NodeToolsBinary string

	// digests holds what ResolveDigests found, by image name.
	digests map[string]Digest
}

// ResolveDigests fetches and parses the checksum (file) of every image now, so that a
// deploy can do it before it writes anything; Deploy then uses what was found instead
// of fetching again. What it finds is added to what earlier calls found (an update
// preflights its images one by one, then records every image's digest). An rsync source
// has no checksum: its daemon is asked for the top of the tree instead (rsync
// --list-only), so that an unreachable daemon or a missing module fails here too. Errors
// are image errors, like Deploy's.
func (d *Deployer) ResolveDigests(ctx context.Context, images []*partition.Image) error {
	found := map[string]Digest{}
	for _, im := range images {
		if _, isRsync, _ := rsyncSource(im.URL); isRsync {
			if im.Checksum != "" {
				return nameImage(im, blame(ErrImage, fmt.Errorf("rsync source %s: a tree has no checksum", im.URL)))
			}
			if err := d.checkRsync(ctx, im.URL); err != nil {
				if !errors.Is(err, run.ErrNotFound) { // the machine lacks rsync: not the image's fault
					err = classify(ctx, streamFault, err)
				}
				return nameImage(im, err)
			}
			found[im.Name] = Digest{} // none, also when an earlier call found one
			continue
		}
		digest, err := d.Fetcher.ResolveDigest(ctx, im.Checksum, im.URL)
		if err != nil {
			return nameImage(im, classify(ctx, streamFault, err))
		}
		found[im.Name] = digest
	}
	if d.digests == nil {
		d.digests = map[string]Digest{}
	}
	maps.Copy(d.digests, found)
	return nil
}

// Deploy deploys one image: it mounts every volume bound to the image into a private
// temporary root (shallowest first), streams the image into its target (tar extracted,
// raw written block-wise before mounting) or, for an rsync source, copies the tree there
// with rsync, verifies a stream's checksum while streaming, writes
// the image's /etc/fstab from the plan, records a whole-OS image's /etc as deployed
// (EtcManifestPath, which a live reload merges /etc against), installs the node tools into a whole-OS image
// that asks for them, and unmounts in reverse order, also on failure.
// Its errors name the image, or the mount point a failed unmount leaves held. They match
// ErrImage when the image is at fault (fetch, checksum, format, decompression,
// truncation, an entry the tree cannot take) and ErrWrite when a target filesystem or
// device failed, filled up or is read-only; while ctx is done they match neither.
func (d *Deployer) Deploy(ctx context.Context, l *partition.Layout, im *partition.Image, devs partition.Devices) (err error) {
	dp := &deployment{d: d, im: im, layout: l, devs: devs, log: d.Log}
	if dp.log == nil {
		dp.log = slog.New(slog.DiscardHandler)
	}
	// Deferred first, so run last: the transfer's progress report ends with the deploy's
	// final error, a failure to unmount included.
	defer func() { dp.endTransfer(err) }()
	defer func() {
		syncErr, unmountErr := dp.unmount(ctx)
		switch {
		case err != nil:
		case syncErr != nil:
			err = nameImage(im, syncErr)
		default:
			err = unmountErr // it names the mount point
		}
	}()
	steps := []func(context.Context) error{dp.devices, dp.open, dp.writeRaw, dp.mount, dp.extract, dp.drain, dp.fstab, dp.etcManifest, dp.nodeTools}
	if _, isRsync, _ := rsyncSource(im.URL); isRsync {
		// A tree, not a stream: nothing to sniff, decompress or checksum.
		steps = []func(context.Context) error{dp.devices, dp.mount, dp.syncTree, dp.fstab, dp.etcManifest, dp.nodeTools}
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return nameImage(im, err)
		}
	}
	if d.Inspect != nil {
		// Inspect names the image in its errors itself.
		return d.Inspect(ctx, im, dp.root)
	}
	return nil
}

// nameImage says which image an error of deploying it is about: "image NAME: ...", or
// "image NAME (URL): ..." for a *formatError, since the format sniffer sees only bytes,
// not where they came from.
func nameImage(im *partition.Image, err error) error {
	if fe, ok := err.(*formatError); ok {
		return fmt.Errorf("image %s (%s): %w", im.Name, im.URL, fe.err)
	}
	return fmt.Errorf("image %s: %w", im.Name, err)
}

// formatError is an error of recognising an image's format, for nameImage to add its URL.
type formatError struct{ err error }

func (e *formatError) Error() string { return e.err.Error() }
func (e *formatError) Unwrap() error { return e.err }

// deployment is one Deploy: its steps run in order, each on what the ones before set up,
// and the cleanup releases whatever they got to.
type deployment struct {
	d      *Deployer
	im     *partition.Image
	layout *partition.Layout
	devs   partition.Devices
	log    *slog.Logger
	byUUID map[string]partition.FSDevice // the device of each planned filesystem

	// The transfer, from the source to the payload that the raw writer or the extractor
	// reads; nil until opened. It has its own context: on a failure it is cancelled
	// before the read-ahead is closed, so that the read-ahead goroutine is never left
	// waiting on the network.
	cancel   context.CancelFunc
	stream   *Stream
	prog     *Progress
	verified io.Reader // the stream as fetched, checksummed
	format   Format
	decoded  io.ReadCloser
	payload  *readAhead

	growAfterMount bool     // the raw image's filesystem grows once mounted (xfs)
	root           string   // the private mount root; "" until made
	mounted        []string // the mount points under root, shallowest first
}

// devices checks that every volume of the image has its device.
func (dp *deployment) devices(context.Context) error {
	dp.byUUID = map[string]partition.FSDevice{}
	for _, t := range partition.FilesystemDevices(dp.layout, dp.devs) {
		dp.byUUID[t.FS.UUID] = t
	}
	for _, m := range dp.im.Mounts {
		if _, ok := dp.byUUID[m.FSUUID]; !ok {
			return fmt.Errorf("no device for the filesystem mounted at %s", m.Path)
		}
	}
	return nil
}

// open opens the transfer: the checksum (unless ResolveDigests found it), the stream
// with its progress, the format, sniffed and held against the spec, and the decompressor.
func (dp *deployment) open(ctx context.Context) error {
	im := dp.im
	digest, ok := dp.d.digests[im.Name]
	if !ok {
		var err error
		if digest, err = dp.d.Fetcher.ResolveDigest(ctx, im.Checksum, im.URL); err != nil {
			return classify(ctx, streamFault, err)
		}
	}
	streamCtx, cancel := context.WithCancel(ctx)
	dp.cancel = cancel
	stream, err := dp.d.Fetcher.Open(streamCtx, im.URL)
	if err != nil {
		return classify(ctx, streamFault, err)
	}
	dp.stream = stream
	dp.prog = NewProgress(dp.d.out(), dp.log, im.Name, stream.Size(), dp.d.TTY, dp.d.ProgressInterval)
	if dp.d.OnProgress != nil {
		dp.prog.Notify(func(done, total int64) { dp.d.OnProgress(im.Name, done, total) })
	}
	dp.verified = Verify(dp.prog.Reader(stream), digest, im.URL)
	format, sniffed, err := Sniff(streamCtx, dp.verified, dp.d.Decompressor)
	if err != nil {
		return &formatError{classify(ctx, streamFault, err)}
	}
	if im.Format != "" && im.Format != format.String() {
		return blame(ErrImage, fmt.Errorf("the spec says format %s, the data is %s", im.Format, format))
	}
	dp.format = format
	decoded, err := dp.d.Decompressor.Open(streamCtx, sniffed, format.Compression)
	if err != nil {
		return classify(ctx, streamFault, err)
	}
	dp.decoded = decoded
	// 8 × 1 MiB in flight: fetch and decompression run ahead of the disk writes.
	dp.payload = newReadAhead(dp.decoded, 1<<20, 8)
	return nil
}

// writeRaw writes a raw image onto the device of the filesystem at its target, which is
// mounted only afterwards.
func (dp *deployment) writeRaw(ctx context.Context) error {
	if dp.format.Payload != "raw" {
		return nil
	}
	target := dp.im.MountAt(dp.im.Target)
	if target == nil {
		return fmt.Errorf("raw image, but no filesystem is mounted at its target %s", dp.im.Target)
	}
	t := dp.byUUID[target.FSUUID]
	raw, err := WriteRaw(ctx, dp.d.Run, dp.d.Sys, dp.payload, t.Dev, t.FS)
	if err != nil {
		return err
	}
	dp.growAfterMount = raw.GrowAfterMount
	dp.log.Info("raw image written", "image", dp.im.Name, "device", t.Dev, "written", raw.Written, "skipped_zero", raw.Skipped)
	return nil
}

// mount makes the private root and mounts every volume of the image in it, shallowest
// first; the filesystem a raw xfs image was written to grows once mounted.
func (dp *deployment) mount(ctx context.Context) error {
	root, err := os.MkdirTemp(dp.d.TmpDir, "provisioner-"+dp.im.Name+"-")
	if err != nil {
		return err
	}
	dp.root = root
	for _, m := range dp.im.Mounts {
		// The tree may already hold a filesystem written from a raw image or kept from an
		// earlier deploy: a symlink there (boot -> /) would make the mount land on the host.
		dir, err := confine.MakeDir(root, m.Path)
		if err != nil {
			return classify(ctx, treeFault, fmt.Errorf("creating mount point %s: %w", m.Path, err))
		}
		if err := disk.Mount(ctx, dp.byUUID[m.FSUUID].Dev, dir, m.FSType, ""); err != nil {
			return err
		}
		dp.mounted = append(dp.mounted, dir)
		if dp.growAfterMount && m.Path == dp.im.Target {
			if _, err := dp.d.Run.Run(ctx, run.Cmd{Argv: []string{"xfs_growfs", dir}}); err != nil {
				return fmt.Errorf("growing %s: %w", m.Path, err)
			}
		}
	}
	return nil
}

// extract extracts a tar image into its target in the mounted tree.
func (dp *deployment) extract(ctx context.Context) error {
	if dp.format.Payload != "tar" {
		return nil
	}
	dest, err := confine.MakeDir(dp.root, dp.im.Target)
	if err != nil {
		return classify(ctx, treeFault, err)
	}
	stats, err := ExtractTar(ctx, dp.payload, dest, ExtractOptions{Sparse: true, Log: dp.log})
	if err != nil {
		return err
	}
	dp.log.Info("image extracted", "image", dp.im.Name, "files", stats.Files, "dirs", stats.Dirs, "bytes", stats.Bytes)
	return nil
}

// drain reads what the payload and the transfer have left (tar padding, trailing bytes
// of the compressed stream): only at the very end are the byte count and the checksum
// known good.
func (dp *deployment) drain(ctx context.Context) error {
	if _, err := io.Copy(io.Discard, dp.payload); err != nil {
		return classify(ctx, streamFault, err)
	}
	if err := dp.decoded.Close(); err != nil {
		return classify(ctx, streamFault, err)
	}
	if _, err := io.Copy(io.Discard, dp.verified); err != nil {
		return classify(ctx, streamFault, err)
	}
	return nil
}

// fstab writes the image's fstab, once the image is complete in its tree.
func (dp *deployment) fstab(ctx context.Context) error {
	if dp.im.Target == "/" {
		if err := writeFstab(dp.root, dp.im.Fstab); err != nil {
			return classify(ctx, treeFault, err)
		}
	}
	return nil
}

// unmount syncs and unmounts the volumes in reverse order, whatever happened, and removes
// the root once nothing is mounted there. It returns the first failure, either of a sync
// (the target did not store what was written) or of an unmount (it leaves the disk held).
func (dp *deployment) unmount(ctx context.Context) (syncErr, unmountErr error) {
	unmounted := true
	for i := len(dp.mounted) - 1; i >= 0; i-- {
		if err := disk.SyncFS(dp.mounted[i]); err != nil && syncErr == nil && unmountErr == nil {
			syncErr = classify(ctx, deviceFault, err)
		}
		if err := disk.Unmount(context.WithoutCancel(ctx), dp.mounted[i]); err != nil {
			unmounted = false
			if syncErr == nil && unmountErr == nil {
				unmountErr = err
			}
		}
	}
	// Never RemoveAll: with a mount left behind it would delete the deployed files.
	if unmounted && dp.root != "" {
		removeMountPoints(dp.root, dp.im.Mounts)
	}
	return syncErr, unmountErr
}

// removeMountPoints removes the private root and the mount points made in it, which a
// target other than / (a utility image into /srv) leaves as directories of the host's
// temporary directory. Only empty directories go (os.Remove), deepest first: one that
// is not empty holds something this deploy did not make there.
func removeMountPoints(root string, mounts []partition.Mount) {
	var dirs []string
	for _, m := range mounts {
		for p := path.Clean("/" + m.Path); p != "/"; p = path.Dir(p) {
			dirs = append(dirs, filepath.Join(root, p))
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		os.Remove(d)
	}
	os.Remove(root)
}

// endTransfer closes what open opened, in reverse, and reports the end of the transfer,
// with err, to its progress.
func (dp *deployment) endTransfer(err error) {
	if dp.payload != nil {
		if err != nil {
			dp.cancel()
		}
		dp.payload.Close()
	}
	if dp.decoded != nil {
		dp.decoded.Close()
	}
	if dp.prog != nil {
		dp.prog.Done(err)
	}
	if dp.stream != nil {
		dp.stream.Close()
	}
	if dp.cancel != nil {
		dp.cancel()
	}
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
