package bootflow

import (
	"context"
	"log/slog"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/agent"
	"github.com/provisioner/provisioner/internal/engine"
)

// nodeLockWait bounds how long a node request waits for another run holding the boot
// files (a switch-default, a confirm from the console): `provisioner list`'s default.
const nodeLockWait = 30 * time.Second

// MachineNode returns the node API of this deployed machine. bootDir is a directory
// holding boot-info.json; "" finds the running system's boot files as `provisioner list`
// does (the multiboot partition by its label, or /boot).
func MachineNode(log *slog.Logger, bootDir string) *agent.Node {
	env := engine.HostEnv(log)
	o := engine.BootDirOptions{Dir: bootDir, Env: env, LockWait: nodeLockWait}
	return &agent.Node{
		Boot:    func(ctx context.Context) (any, error) { return nodeBoot(ctx, o) },
		Confirm: func(ctx context.Context) (any, error) { return nodeConfirm(ctx, o) },
		Reload: func(ctx context.Context, req agent.ReloadRequest, events func(engine.Event)) (*bootloader.BootInfo, error) {
			return nodeReload(ctx, log, o, req, events)
		},
	}
}

// nodeReload is POST /v1/reload: the reload of one image, as `provisioner reload` does it
// on the node, its events to the callback and to the log.
func nodeReload(ctx context.Context, log *slog.Logger, o engine.BootDirOptions, req agent.ReloadRequest, events func(engine.Event)) (*bootloader.BootInfo, error) {
	res, err := engine.Reload(ctx, engine.ReloadOptions{
		Image: req.Image, URL: req.URL, Checksum: req.Checksum, Format: req.Format,
		ImageUUID: req.ImageUUID, ImageName: req.ImageName, Tries: req.Tries, NoTrial: req.NoTrial,
		BootDir: o, Boot: engine.BootOptions{Self: []string{"/proc/self/exe"}},
		Events: events, Log: log,
	})
	if err != nil {
		return nil, err
	}
	return res.BootInfo, nil
}

// nodeBoot is GET /v1/boot: list --json's document, read under list's shared lock (and
// recording a rollback grub made, as list does).
func nodeBoot(ctx context.Context, o engine.BootDirOptions) (any, error) {
	l, err := engine.List(ctx, o)
	if err != nil {
		return nil, err
	}
	return l.Document(), nil
}

// nodeConfirm is POST /v1/confirm: what `provisioner confirm --json` prints.
func nodeConfirm(ctx context.Context, o engine.BootDirOptions) (any, error) {
	return engine.Confirm(ctx, o)
}
