package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/provisioner/provisioner/internal/run"
)

// ServiceRestart is one running service a live reload restarted, or left running.
type ServiceRestart struct {
	Unit string
	// Reason says which of its files changed.
	Reason string
	// Err is the restart's failure; for a skipped service, nil.
	Err error
}

// neverRestarted are the services a live reload leaves running even when their files
// changed: restarting the message bus cuts every service talking over it. They use the
// old files until the next boot.
var neverRestarted = map[string]bool{"dbus.service": true, "dbus-broker.service": true}

// services restarts, where systemd runs, the services whose files a live reload changed:
// after systemctl daemon-reexec (PID 1 re-executes itself from its new binary and reloads
// the unit files), every running service whose main process runs a program or maps a
// library that was replaced (/proc/PID/exe or /proc/PID/maps says "(deleted)"), or whose
// unit file or drop-in is among changed, is restarted with systemctl restart, one by one.
type services struct {
	run     run.Runner
	procDir string
	// changed holds the paths the sync added, replaced or removed.
	changed map[string]bool
	// self are the process ids of this run and its parent: a service they belong to is
	// not restarted under them.
	self map[int]bool
}

// serviceInfo is what systemctl show says of a running service.
type serviceInfo struct {
	unit     string
	mainPID  int
	fragment string
	dropIns  []string
}

// restartAll re-executes systemd and restarts the services that need it; it returns the
// restarts (with their errors) and the services left running.
func (s *services) restartAll(ctx context.Context) (done, skipped []ServiceRestart, err error) {
	if _, err := s.run.Run(ctx, run.Cmd{Argv: []string{"systemctl", "daemon-reexec"}}); err != nil {
		return nil, nil, fmt.Errorf("systemctl daemon-reexec: %w", err)
	}
	infos, err := s.running(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, in := range infos {
		why := s.reason(in)
		switch {
		case why == "":
			continue
		case neverRestarted[in.unit]:
			skipped = append(skipped, ServiceRestart{Unit: in.unit, Reason: why + "; the message bus is not restarted: it uses the old files until the next boot"})
			continue
		case s.self[in.mainPID]:
			skipped = append(skipped, ServiceRestart{Unit: in.unit, Reason: why + "; it runs this reload: restart it afterwards"})
			continue
		}
		r := ServiceRestart{Unit: in.unit, Reason: why}
		if _, err := s.run.Run(ctx, run.Cmd{Argv: []string{"systemctl", "restart", "--", in.unit}}); err != nil {
			r.Err = err
		}
		done = append(done, r)
	}
	return done, skipped, nil
}

// running lists the running services with their main process and unit files.
func (s *services) running(ctx context.Context) ([]serviceInfo, error) {
	out, err := s.run.Run(ctx, run.Cmd{Argv: []string{"systemctl", "list-units", "--type=service", "--state=running", "--no-legend", "--plain", "--full"}})
	if err != nil {
		return nil, fmt.Errorf("listing the running services: %w", err)
	}
	var units []string
	for _, line := range strings.Split(string(out.Stdout), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasSuffix(f[0], ".service") {
			units = append(units, f[0])
		}
	}
	if len(units) == 0 {
		return nil, nil
	}
	argv := append([]string{"systemctl", "show", "--property=Id,MainPID,FragmentPath,DropInPaths", "--"}, units...)
	out, err = s.run.Run(ctx, run.Cmd{Argv: argv})
	if err != nil {
		return nil, fmt.Errorf("reading the running services' processes: %w", err)
	}
	return parseShow(out.Stdout), nil
}

// parseShow parses systemctl show's blocks of KEY=VALUE lines, one block per unit.
func parseShow(b []byte) []serviceInfo {
	var out []serviceInfo
	var cur *serviceInfo
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			cur = nil
			continue
		}
		if cur == nil {
			out = append(out, serviceInfo{})
			cur = &out[len(out)-1]
		}
		switch k {
		case "Id":
			cur.unit = v
		case "MainPID":
			cur.mainPID, _ = strconv.Atoi(v)
		case "FragmentPath":
			cur.fragment = v
		case "DropInPaths":
			cur.dropIns = strings.Fields(v)
		}
	}
	return out
}

// reason says why a service needs a restart, "" when it does not.
func (s *services) reason(in serviceInfo) string {
	if in.mainPID > 0 {
		pid := strconv.Itoa(in.mainPID)
		if exe, err := os.Readlink(filepath.Join(s.procDir, pid, "exe")); err == nil {
			if p, ok := strings.CutSuffix(exe, " (deleted)"); ok {
				return "its program " + p + " was replaced"
			}
		}
		if lib := deletedMapping(filepath.Join(s.procDir, pid, "maps"), s.changed); lib != "" {
			return "a library it uses, " + lib + ", was replaced"
		}
	}
	for _, f := range append([]string{in.fragment}, in.dropIns...) {
		if f == "" {
			continue
		}
		if s.changed[f] {
			return "its unit file " + f + " changed"
		}
		if real, err := filepath.EvalSymlinks(filepath.Dir(f)); err == nil && s.changed[filepath.Join(real, filepath.Base(f))] {
			return "its unit file " + f + " changed"
		}
	}
	return ""
}

// deletedMapping returns the first file mapped in a process's maps that was deleted and
// is among changed: a library the sync replaced or removed (shared memory and anonymous
// files are deleted by design, and a file deleted by something else is not the sync's).
func deletedMapping(maps string, changed map[string]bool) string {
	f, err := os.Open(maps)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutSuffix(sc.Text(), " (deleted)")
		if !ok {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 6 {
			continue
		}
		p := strings.Join(fields[5:], " ")
		if changed[p] {
			return p
		}
	}
	return ""
}

// restart restarts the services where systemd runs; a failed restart is the run's error.
func (l *liveReload) restart(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(l.lo.Root, "run/systemd/system")); err != nil {
		l.res.NoSystemd = "systemd is not running (no /run/systemd/system): no service was restarted"
		return nil
	}
	changed := map[string]bool{}
	for _, p := range l.plan.Changed() {
		changed[p] = true
	}
	s := &services{run: l.o.BootDir.Env.Run, procDir: l.lo.ProcDir, changed: changed, self: map[int]bool{os.Getpid(): true, os.Getppid(): true}}
	done, skipped, err := s.restartAll(ctx)
	l.res.Restarts, l.res.Skipped = done, skipped
	for _, r := range done {
		l.reload.events.emit(Event{Message: fmt.Sprintf("restarted %s: %s%s", r.Unit, r.Reason, errSuffix(r.Err))})
	}
	if err != nil {
		return &classified{ErrEnvironment, fmt.Errorf("reload --live: the root is synced and committed, but restarting the services failed: %w", err)}
	}
	var failed []error
	for _, r := range done {
		if r.Err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", r.Unit, r.Err))
		}
	}
	if len(failed) > 0 {
		return &classified{ErrEnvironment, fmt.Errorf("reload --live: the root is synced and committed, but %d service(s) failed to restart: %w", len(failed), errors.Join(failed...))}
	}
	return nil
}

// errSuffix is ": failed: ERR" for a failed step, "" otherwise.
func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " — failed: " + err.Error()
}
