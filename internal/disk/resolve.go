package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Resolve finds the block device a spec disk id names and returns its /dev path with
// symlinks resolved, so that every later step (lock, busy check, re-read) talks about the
// same node whatever alias the spec used.
//
// idType is one of:
//   - "name": "vda" or "/dev/vda";
//   - "path": "disk/by-id/..." or "/dev/disk/by-path/..." or any absolute path; a relative
//     path (and a "/dev/..." one) is taken under DevRoot;
//   - "by-id": a name under /dev/disk/by-id (which only udev creates);
//   - "scsi": "H:C:T:L", looked up in SysRoot/class/scsi_disk/H:C:T:L/device/block/*;
//   - "serial": SysRoot/block/*/device/serial or SysRoot/block/*/serial, trimmed;
//   - "wwn": SysRoot/block/*/wwid or device/wwid, compared without a "naa.", "eui." or "0x"
//     prefix and without case, so "0x5000c500a1b2c3d4" (udev's form) matches the kernel's
//     "naa.5000c500a1b2c3d4".
//
// Only whole disks match: a partition (SysRoot/class/block/X/partition exists) is never
// returned, because the spec's disk ids name the disks we partition. Errors name the id and
// say what was looked at; errors.Is(err, ErrNotFound) holds when nothing matches. A serial or
// wwn that matches more than one disk is an error, never a guess.
func (s Sys) Resolve(ctx context.Context, idType, value string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	id := fmt.Sprintf("disk id %s %q", idType, value)
	v := strings.TrimSpace(value)
	if v == "" {
		return "", fmt.Errorf("resolving %s: empty value", id)
	}
	var (
		dev string
		err error
	)
	switch idType {
	case "name":
		dev, err = s.resolveName(v)
	case "path":
		dev, err = s.resolvePath(v)
	case "by-id":
		dev, err = s.resolveByID(v)
	case "scsi":
		dev, err = s.resolveSCSI(v)
	case "serial":
		dev, err = s.resolveAttr(v, "serial", []string{"device/serial", "serial"}, strings.TrimSpace)
	case "wwn":
		dev, err = s.resolveAttr(v, "wwn", []string{"wwid", "device/wwid"}, normWWN)
	default:
		return "", fmt.Errorf("resolving %s: unknown id type (want name, path, by-id, scsi, serial or wwn)", id)
	}
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", id, err)
	}
	return dev, nil
}

func (s Sys) resolveName(v string) (string, error) {
	name := strings.TrimPrefix(v, "/dev/")
	if !plainName(name) {
		return "", fmt.Errorf("%q is not a device name such as vda or /dev/vda", v)
	}
	return s.wholeDisk(s.node(name))
}

func (s Sys) resolvePath(v string) (string, error) {
	p := filepath.Clean(v)
	switch {
	case strings.HasPrefix(p, "/dev/"):
		// Spec paths are written against the real /dev; keep them inside DevRoot so a
		// fake tree sees the same layout.
		p = filepath.Join(s.devRoot(), strings.TrimPrefix(p, "/dev/"))
	case !filepath.IsAbs(p):
		p = filepath.Join(s.devRoot(), p)
	}
	return s.wholeDisk(p)
}

func (s Sys) resolveByID(v string) (string, error) {
	name := strings.TrimPrefix(v, "/dev/disk/by-id/")
	if !plainName(name) {
		return "", fmt.Errorf("%q is not a name under /dev/disk/by-id", v)
	}
	dir := filepath.Join(s.devRoot(), "disk", "by-id")
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%s does not exist (only udev creates it; use a serial, wwn or name id where udev does not run): %w", dir, ErrNotFound)
	}
	return s.wholeDisk(filepath.Join(dir, name))
}

func (s Sys) resolveSCSI(v string) (string, error) {
	f := strings.Split(v, ":")
	ok := len(f) == 4
	for _, x := range f {
		if _, err := strconv.ParseUint(x, 10, 32); err != nil {
			ok = false
		}
	}
	if !ok {
		return "", fmt.Errorf("%q is not a SCSI address host:channel:target:lun", v)
	}
	dir := filepath.Join(s.sysRoot(), "class", "scsi_disk", v, "device", "block")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || err == nil && len(ents) == 0 {
		return "", fmt.Errorf("no disk at that SCSI address (%s is missing or empty): %w", dir, ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range ents {
		if !s.isPartition(e.Name()) {
			names = append(names, e.Name())
		}
	}
	switch len(names) {
	case 0:
		return "", fmt.Errorf("%s lists no whole disk: %w", dir, ErrNotFound)
	case 1:
		return s.wholeDisk(s.node(names[0]))
	default:
		return "", fmt.Errorf("%s lists several disks (%s)", dir, strings.Join(names, ", "))
	}
}

// resolveAttr finds the one whole disk in SysRoot/block whose first readable attribute file
// of files, normalised by norm, equals norm(v).
func (s Sys) resolveAttr(v, what string, files []string, norm func(string) string) (string, error) {
	dir := filepath.Join(s.sysRoot(), "block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("listing disks: %w", err)
	}
	want := norm(v)
	var matches, seen []string
	for _, e := range ents {
		name := e.Name()
		if s.isPartition(name) {
			continue
		}
		got := ""
		for _, f := range files {
			if b, err := os.ReadFile(filepath.Join(dir, name, f)); err == nil && strings.TrimSpace(string(b)) != "" {
				got = strings.TrimSpace(string(b))
				break
			}
		}
		if got == "" {
			seen = append(seen, name+": none")
			continue
		}
		seen = append(seen, name+": "+got)
		if norm(got) == want {
			matches = append(matches, name)
		}
	}
	sort.Strings(matches)
	switch len(matches) {
	case 0:
		if len(seen) == 0 {
			seen = []string{"no disks"}
		}
		return "", fmt.Errorf("no whole disk in %s has that %s (looked at %s of each; found %s): %w",
			dir, what, strings.Join(files, " and "), strings.Join(seen, ", "), ErrNotFound)
	case 1:
		return s.wholeDisk(s.node(matches[0]))
	default:
		return "", fmt.Errorf("%s matches several disks (%s); use an id that names one disk", what, strings.Join(matches, ", "))
	}
}

// wholeDisk resolves symlinks in path and checks that it is a whole disk the kernel knows.
func (s Sys) wholeDisk(path string) (string, error) {
	resolved, err := filepath.EvalSymlinks(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%s does not exist: %w", path, ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	name, err := s.kernelName(resolved)
	if err != nil {
		return "", err
	}
	if s.isPartition(name) {
		return "", fmt.Errorf("%s is a partition, not a whole disk: %w", resolved, ErrNotFound)
	}
	return resolved, nil
}

// normWWN strips the prefixes the kernel (naa., eui.) and udev (0x) put in front of the
// same number, so a spec can use either form.
func normWWN(v string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	for _, p := range []string{"naa.", "eui.", "0x"} {
		v = strings.TrimPrefix(v, p)
	}
	return v
}

func plainName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsRune(name, '/')
}
