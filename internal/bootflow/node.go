package bootflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/agent"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
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
		Update: func(ctx context.Context, spec *schema.Spec, uo agent.UpdateOptions, events func(engine.Event)) (*engine.UpdateResult, error) {
			return engine.Update(ctx, spec, nodeUpdateOptions(log, o, uo, events))
		},
		PlanAgainst: func(ctx context.Context, spec *schema.Spec, uo agent.UpdateOptions) (*partition.Breakdown, error) {
			return engine.PlanAgainst(ctx, spec, nodeAgainst(log, o, uo.RemoveData))
		},
	}
}

// nodeAgainst is where POST /v1/update finds the node: the spec's own disks, found by
// their ids, and the running system's boot files, as `provisioner update` on the node
// finds them; its notes go to the log. removeData is update's --remove-data.
func nodeAgainst(log *slog.Logger, o engine.BootDirOptions, removeData bool) engine.AgainstOptions {
	return engine.AgainstOptions{BootDir: o, RemoveData: removeData, Note: func(n string) { log.Info("update: " + n) }}
}

// nodeUpdateOptions are the options of POST /v1/update's run: `provisioner update --yes`
// on the node (nothing asked), its events to the callback and to the log.
func nodeUpdateOptions(log *slog.Logger, o engine.BootDirOptions, uo agent.UpdateOptions, events func(engine.Event)) engine.UpdateOptions {
	return engine.UpdateOptions{
		Against: nodeAgainst(log, o, uo.RemoveData),
		Force:   uo.Force, Tries: uo.Tries, NoTrial: uo.NoTrial,
		Boot:     engine.BootOptions{Self: []string{"/proc/self/exe"}},
		ImageRun: engine.ImageRun{Events: events, Log: log},
	}
}

// nodeReload is POST /v1/reload: the reload of one image, as `provisioner reload` does it
// on the node, its events to the callback and to the log.
func nodeReload(ctx context.Context, log *slog.Logger, o engine.BootDirOptions, req agent.ReloadRequest, events func(engine.Event)) (*bootloader.BootInfo, error) {
	res, err := engine.Reload(ctx, engine.ReloadOptions{
		Image: req.Image, URL: req.URL, Checksum: req.Checksum, Format: req.Format,
		ImageUUID: req.ImageUUID, ImageName: req.ImageName, Tries: req.Tries, NoTrial: req.NoTrial,
		BootDir: o, Boot: engine.BootOptions{Self: []string{"/proc/self/exe"}},
		ImageRun: engine.ImageRun{Events: events, Log: log},
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

// ramdiskLockWait bounds the ramdisk's wait for the boot files' lock: nothing else runs
// in the ramdisk but the agent's own requests.
const ramdiskLockWait = time.Minute

// RamdiskReloader is the reload of the deploy ramdisk's reload mode: the reload of one
// image, offline, of the node whose kept copy of the ramdisk booted (the multiboot
// partition found by its label), with Reload's code and crash-safe order. A single-image
// node's default is the ramdisk's entry while its root is rewritten, and its trial falls
// back to it; after are the kernel words the ramdisk's entry keeps once the image is
// written (see AfterReloadWords). progress receives the transfer's lines.
func RamdiskReloader(log *slog.Logger, prober string, after []string, progress io.Writer) agent.ReloadFunc {
	return func(ctx context.Context, req agent.ReloadRequest, events func(engine.Event)) (*bootloader.BootInfo, error) {
		res, err := engine.Reload(ctx, engine.ReloadOptions{
			Image: req.Image, URL: req.URL, Checksum: req.Checksum, Format: req.Format,
			ImageUUID: req.ImageUUID, ImageName: req.ImageName, Tries: req.Tries, NoTrial: req.NoTrial,
			BootDir: engine.BootDirOptions{Env: engine.HostEnv(log), LockWait: ramdiskLockWait},
			Boot:    engine.BootOptions{Self: []string{"/proc/self/exe"}}, Prober: prober,
			ImageRun:  engine.ImageRun{Events: engine.Tee(events, engine.TextEvents(progress)), Log: log, Out: progress},
			InRamdisk: true, RamdiskAfter: after,
		})
		if err != nil {
			return nil, err
		}
		return res.BootInfo, nil
	}
}

// CheckKept is what the ramdisk booted from the node's kept copy, with nothing to do,
// reports: a trial grub rolled back to it (step "trial"; the rollback is recorded in the
// history, as list records it), or an image whose reload failed or was cut (step
// "reload"), or boot files it cannot read (step "boot-files"). It returns "" and nil when
// the boot files show none of these.
func CheckKept(ctx context.Context, env partition.Env) (string, error) {
	l, err := engine.List(ctx, engine.BootDirOptions{Env: env, LockWait: ramdiskLockWait})
	if err != nil {
		return "boot-files", fmt.Errorf("reading the node's boot files: %w", err)
	}
	if rb := l.Rollback; rb != nil {
		return "trial", errors.New(rb.Message)
	}
	for _, e := range l.Status.Elements {
		if e.State != "" {
			why := e.StateError
			if why == "" {
				why = "it was cut"
			}
			return "reload", fmt.Errorf("the reload of %s is %s: %s", e.OSID, e.State, why)
		}
	}
	return "", nil
}
