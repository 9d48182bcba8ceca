package engine

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"path/filepath"
	"strings"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/partition"
	"golang.org/x/sys/unix"
)

// StageDirName is the staging directory of a live reload, at the top of the root's own
// filesystem so that its files can be renamed into the root.
const StageDirName = ".provisioner-stage"

// LiveOptions are what a live reload adds to a reload's options.
type LiveOptions struct {
	// DryRun stages the new image, plans the sync and removes the staged tree again:
	// nothing of the root, the boot files or the services changes.
	DryRun bool
	// IncludeVar lists the paths under /var that are synced; the rest of /var is not.
	IncludeVar []string
	// Root is the running root ("": /). Tests give a mounted image's root.
	Root string
	// KernelRelease is the running kernel's release ("": uname -r). Tests give the one
	// of the image mounted at Root.
	KernelRelease string
	// ProcDir is the process filesystem that tells which services run replaced files
	// ("": /proc).
	ProcDir string
}

// LiveReloadResult says what a live reload did, or would do with DryRun.
type LiveReloadResult struct {
	// Element is the image's boot entry as committed (as it was, with DryRun).
	Element bootloader.Element
	// From and To are the image's versions before and after.
	From, To bootloader.ImageVersion
	// Kernel is the running kernel's release, the new image's too.
	Kernel string
	// Plan is the sync, with its counts and bytes per class and the merged files.
	Plan   *deploy.SyncPlan
	DryRun bool
	// Restarts lists the services restarted, each with its error if the restart failed.
	Restarts []ServiceRestart
	// Skipped lists the services that use replaced files but are not restarted, and why.
	Skipped []ServiceRestart
	// NoSystemd says why no service was restarted ("" when systemd runs).
	NoSystemd string
}

// ReloadLive reloads the image the node runs from without a reboot, when the new image
// has the running kernel: it checks that the image is the booted one, stages the new
// image on the root's own filesystem with the deploy's code (after checking the room),
// refuses when the staged kernel is not the running one, plans the sync and, unless
// DryRun, applies it (deploy.ApplySync: by rename, never in place), commits the boot
// files (boot-info.json, the plan record and a "reload-live" history record; the menu
// and grubenv stay), and where systemd runs re-executes it and restarts the services
// whose program, libraries or unit files changed. A failed restart is in the result and
// the error. o.Tries and o.NoTrial are refused: nothing boots.
func ReloadLive(ctx context.Context, o ReloadOptions, lo LiveOptions) (res *LiveReloadResult, err error) {
	r := &reload{o: o, events: emitter(o.Events), log: o.Log}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	st := &runState{}
	defer func() { err = st.interrupted(ctx, err) }()
	r.events = st.track(r.events)
	r.st = st
	l := &liveReload{reload: r, lo: lo}
	if err := l.check(); err != nil {
		return nil, err
	}
	r.o.BootDir.Writable = !lo.DryRun
	err = withBootDir(ctx, r.o.BootDir, func(bd *BootDir) error {
		r.bd = bd
		if err := l.prepare(ctx); err != nil {
			return err
		}
		res, err = l.run(ctx)
		return err
	})
	return res, err
}

// liveReload is one run of ReloadLive: a reload's checks and deployer, and the sync.
type liveReload struct {
	*reload
	lo    LiveOptions
	stage string
	dev   uint64
	plan  *deploy.SyncPlan
	res   *LiveReloadResult
}

// check vets the options alone.
func (l *liveReload) check() error {
	if err := checkSource(l.o); err != nil {
		return err
	}
	if l.o.Tries != 0 || l.o.NoTrial {
		return Usagef("reload --live: --tries and --no-trial do not apply: nothing boots, the running kernel stays")
	}
	if l.lo.Root == "" {
		l.lo.Root = "/"
	}
	if l.lo.ProcDir == "" {
		l.lo.ProcDir = "/proc"
	}
	for _, p := range l.lo.IncludeVar {
		if c := path.Clean("/" + p); !strings.HasPrefix(c, "/var/") {
			return Usagef("reload --live: --include-var %s: want a path under /var", p)
		}
	}
	l.stage = filepath.Join(l.lo.Root, StageDirName)
	return nil
}

// prepare reads the record and the boot info, and checks what can be checked before the
// staging: the image is the booted one and has a whole-OS root, and its source opens.
func (l *liveReload) prepare(ctx context.Context) error {
	r := l.reload
	if err := r.readBoot(); err != nil {
		return err
	}
	if err := l.checkBooted(ctx); err != nil {
		return err
	}
	if err := r.planReload(); err != nil {
		return err
	}
	if r.plan.Image.Target != "/" {
		return Usagef("reload --live: image %s goes into %s, not /: only a whole-OS root is reloaded live", r.el.OSID, r.plan.Image.Target)
	}
	if err := r.preflight(ctx); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Stat(l.lo.Root, &st); err != nil {
		return Environmentf("reload --live: the root %s: %w", l.lo.Root, err)
	}
	l.dev = st.Dev
	return ctx.Err()
}

// checkBooted refuses an image other than the one the root at Root belongs to.
func (l *liveReload) checkBooted(ctx context.Context) error {
	got := rootUUIDAt(ctx, l.o.BootDir.Env, l.lo.Root)
	want := l.el.RootUUID
	switch {
	case got == "":
		return Environmentf("reload --live: cannot tell which filesystem is mounted at %s (no block device or no UUID): refusing to sync it", l.lo.Root)
	case want == "":
		return Environmentf("reload --live: boot-info.json has no root_uuid for %s", l.el.OSID)
	case !strings.EqualFold(got, want):
		return Usagef("reload --live: %s is not the image the node runs from: its root is %s, the root at %s is %s; reload it without --live", l.el.OSID, want, l.lo.Root, got)
	}
	return nil
}

// rootUUIDAt is the UUID of the filesystem mounted at root: the booted one for /.
func rootUUIDAt(ctx context.Context, env partition.Env, root string) string {
	if root == "/" {
		return BootedRootUUID(ctx, env)
	}
	mounts, err := env.Sys.Mounts()
	if err != nil {
		return ""
	}
	var num string
	for _, m := range mounts {
		if m.Point == filepath.Clean(root) {
			num = m.DevNum
		}
	}
	if num == "" || strings.HasPrefix(num, "0:") {
		return ""
	}
	node, err := env.Sys.DevNode(num)
	if err != nil {
		return ""
	}
	info, err := probeFS(ctx, env.Run, node)
	if err != nil {
		return ""
	}
	return info.UUID
}

// syncOptions are the sync's options.
func (l *liveReload) syncOptions() deploy.SyncOptions {
	return deploy.SyncOptions{StageDir: "/" + StageDirName, IncludeVar: l.lo.IncludeVar}
}

// removeStage removes the staging directory, never leaving the root's filesystem.
func (l *liveReload) removeStage() error {
	if err := deploy.RemoveStage(l.stage, l.dev); err != nil {
		return Environmentf("reload --live: %w", err)
	}
	return nil
}

// humanBytes shows a byte count in MiB with one decimal.
func humanBytes(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// The live sync's classes and manifest path, for the commands that print a live reload's
// plan (they see the deploy package through the engine only).
var (
	// SyncClasses lists a live sync's classes in the order they are reported.
	SyncClasses = deploy.SyncClasses
)

const (
	// SyncMerged is the class of an /etc file the node changed: its version is kept
	// and the image's is written beside it.
	SyncMerged = deploy.SyncMerged
	// EtcManifestPath is where a deploy records the image's /etc as deployed.
	EtcManifestPath = deploy.EtcManifestPath
)
