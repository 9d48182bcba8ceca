package deploy

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/schema"
)

// rsyncArgs are the options of every copy from an rsync daemon. Kept: hard links, ACLs,
// xattrs (file capabilities among them: as root rsync copies every namespace but
// system.*, which -A covers), owners and groups by number (the ramdisk's names are not
// the image's), device nodes and FIFOs, permissions and times. --one-file-system keeps
// the daemon's side to the tree's own filesystem. On the receiving side rsync replaces
// a symlink found where the tree has a directory or file rather than follow it, as long
// as --keep-dirlinks is not given: a volume kept from an earlier deploy cannot lead the
// copy out of the image's root. The timeouts make a dead daemon an error, not a hang.
var rsyncArgs = []string{
	"rsync", "--archive", "--hard-links", "--acls", "--xattrs", "--numeric-ids",
	"--one-file-system", "--sparse", "--no-motd", "--contimeout=30", "--timeout=120",
}

// rsyncSource returns the argument rsync takes for an image source and whether src is
// an rsync source at all (schema.IsRsyncSource). The argument ends in "/", so that the
// tree's contents are copied rather than a directory named after its last component.
func rsyncSource(src string) (arg string, ok bool, err error) {
	if !schema.IsRsyncSource(src) {
		return "", false, nil
	}
	var host, rest string
	if host, rest, ok = schema.CutRsyncHost(src); !ok {
		u, err := url.Parse(src)
		if err != nil {
			return "", true, fmt.Errorf("rsync source %s: %w", src, err)
		}
		host, rest = u.Host, strings.TrimPrefix(u.Path, "/")
	}
	module, _, _ := strings.Cut(rest, "/")
	switch {
	case host == "" || strings.HasPrefix(host, "-"):
		return "", true, fmt.Errorf("rsync source %s: no host", src)
	case module == "":
		return "", true, fmt.Errorf("rsync source %s: no module (want HOST::module/path/ or rsync://HOST[:PORT]/module/path/)", src)
	}
	if !strings.HasSuffix(src, "/") {
		src += "/"
	}
	return src, true, nil
}

// checkRsync lists the top of an rsync source (rsync --list-only, one level), so that an
// unreachable daemon, an unknown module or a missing path fails before anything is
// written.
func (d *Deployer) checkRsync(ctx context.Context, src string) error {
	arg, _, err := rsyncSource(src)
	if err != nil {
		return err
	}
	argv := append([]string{"rsync", "--list-only", "--no-motd", "--contimeout=30", "--timeout=120", "--"}, arg)
	return d.Fetcher.rsync(ctx, d.Run, argv, arg)
}

// syncTree copies an rsync source into the image's target in the mounted tree.
func (dp *deployment) syncTree(ctx context.Context) error {
	arg, _, err := rsyncSource(dp.im.URL)
	if err != nil {
		return blame(ErrImage, err)
	}
	dest, err := confine.MakeDir(dp.root, dp.im.Target)
	if err != nil {
		return classify(ctx, treeFault, err)
	}
	start := time.Now()
	argv := append(append([]string{}, rsyncArgs...), "--", arg, dest+"/")
	if err := dp.d.Fetcher.rsync(ctx, dp.d.Run, argv, arg); err != nil {
		return err
	}
	dp.log.Info("image copied with rsync", "image", dp.im.Name, "source", arg, "seconds", time.Since(start).Seconds())
	return nil
}

// rsync runs argv, retrying with the Fetcher's backoff up to its retry budget while the
// failure is one that asking again may cure (the network, a busy daemon). Its errors name
// src and say whose fault they are: ErrWrite when the receiving filesystem failed, else
// ErrImage; a missing rsync program is neither.
func (f *Fetcher) rsync(ctx context.Context, r run.Runner, argv []string, src string) error {
	retries := f.retries()
	for attempt := 0; ; attempt++ {
		_, err := r.Run(ctx, run.Cmd{Argv: argv, Env: []string{"LC_ALL=C"}})
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("rsync from %s: %w", src, context.Cause(ctx))
		}
		if errors.Is(err, run.ErrNotFound) {
			return fmt.Errorf("rsync from %s: %w", src, err)
		}
		if rsyncWriteFault(err) {
			return blame(ErrWrite, fmt.Errorf("rsync from %s: %w", src, err))
		}
		if !rsyncRetryable(err) || attempt >= retries {
			if attempt > 0 {
				err = fmt.Errorf("gave up after %d attempts: %w", attempt+1, err)
			}
			return blame(ErrImage, fmt.Errorf("rsync from %s: %w", src, err))
		}
		f.log().Warn("rsync failed, retrying", "source", src, "attempt", attempt+1, "err", err)
		if err := f.wait(ctx, attempt+1, err); err != nil {
			return fmt.Errorf("rsync from %s: %w", src, err)
		}
	}
}

// rsyncRetryable tells rsync's transient failures by its exit code: socket I/O (10), a
// broken protocol stream (12), a timeout (30, 35), or a daemon at its connection limit
// (5 with "max connections"). An unknown module, a refused login or a missing path is
// the same the next time.
func rsyncRetryable(err error) bool {
	var re *run.Error
	if !errors.As(err, &re) {
		return false
	}
	switch re.ExitCode {
	case 10, 12, 30, 35:
		return true
	case 5:
		return strings.Contains(re.Stderr, "max connections")
	}
	return false
}

// rsyncWriteFault reports whether rsync's stderr shows the receiving side (this machine's
// target filesystem) failing with one of targetErrnos. rsync prints an errno as
// "strerror (N)"; lines about the daemon's side carry "[sender]" and do not count.
func rsyncWriteFault(err error) bool {
	var re *run.Error
	if !errors.As(err, &re) {
		return false
	}
	for line := range strings.SplitSeq(strings.ToLower(re.Stderr), "\n") {
		if strings.Contains(line, "[sender]") {
			continue
		}
		for _, e := range targetErrnos {
			if strings.Contains(line, strings.ToLower(e.Error())+" ("+strconv.Itoa(int(e))+")") {
				return true
			}
		}
	}
	return false
}
