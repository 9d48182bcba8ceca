package testimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Options describe one OS image.
type Options struct {
	Name       string          // short id, e.g. "a": lowercase letters, digits, ".", "_", "-" (it becomes os-release ID=tiny-<name>)
	Marker     string          // printed on the console at boot, e.g. "BOOTED-IMAGE-A"; one line, required unless NoKernel
	PrettyName string          // os-release PRETTY_NAME, e.g. "Tiny test image A"; "Tiny test image <name>" when empty
	Files      map[string]File // extra files by path relative to the root ("usr/bin/provisioner"); they replace built-in files of the same path
	NoKernel   bool            // a utility image: no /boot content, no init
	// InitScript holds extra shell lines that /sbin/init runs after printing the marker
	// and before powering off, so later tests can run commands inside the booted image.
	// It runs as PID 1 with PATH=/bin and stdout on the console; it must not exit (the
	// kernel would panic instead of powering off). Applets without a link in /bin are
	// reachable as "busybox <applet>".
	InitScript string
	// Storage gives the image the stage-1 initramfs that assembles md arrays and
	// activates LVM (Kit.StorageInitrd, from PrepareStorage), for a root on a logical
	// volume or an md raid1 array.
	Storage bool
	// HostTools are host programs (found in /usr/sbin, /usr/bin, /sbin, /bin) copied
	// into /usr/sbin of the image with their loader and libraries, for a provisioner
	// run inside the booted image that calls them (mke2fs, blkid). Files win over them.
	HostTools []string
	// PanicAfterMarker makes /sbin/init exit after the marker and InitScript, so the
	// kernel panics ("Attempted to kill init") as a broken OS would; with panic=-1 on
	// the kernel command line the guest reboots at once.
	PanicAfterMarker bool
	// CorruptKernel replaces the kernel under /boot with pseudo-random bytes of the
	// same size and name: kernel probers still find it, a bootloader cannot load it.
	CorruptKernel bool
}

// File is an extra file's content and mode. A Mode with fs.ModeSymlink makes a symbolic
// link to string(Data); fs.ModeDir makes a directory (Data ignored); otherwise a regular
// file with the permission bits of Mode (0644 when they are zero).
type File struct {
	Data []byte
	Mode fs.FileMode
}

// imageMTime is every entry's modification time: fixed so equal inputs give equal bytes.
var imageMTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// rootApplets get a link in /bin of every image: what /sbin/init uses plus the commands
// an InitScript most likely needs.
var rootApplets = []string{
	"sh", "mount", "umount", "echo", "cat", "poweroff", "sync", "sleep", "ls", "mkdir",
	"uname", "grep", "sed", "test", "[", "cp", "mv", "rm", "ln", "chmod", "touch", "head",
	"tail", "wc", "tr", "cut", "dd", "sha256sum", "df", "find", "true", "false",
}

// rootInit is /sbin/init of an image. It reads the marker from /etc/image-id rather than
// embedding it, so no marker text ever needs shell quoting. %s is Options.InitScript.
const rootInit = `#!/bin/sh
# /sbin/init of a provisioner test image: print the marker, which root it booted from
# and when, run the test's lines, power off (QEMU -no-reboot then exits with status 0).
export PATH=/bin
# /dev normally comes mounted from stage 1. It goes first because a redirection to a
# missing /dev/null would skip the command it belongs to.
[ -c /dev/null ] || mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
root=
for a in $(cat /proc/cmdline); do
	case $a in root=*) root=${a#root=} ;; esac
done
read up _ </proc/uptime
echo "$(cat /etc/image-id) root=$root uptime=$up" >/dev/console
%s
%s`

// initEnd ends /sbin/init: power off, or (PanicAfterMarker) exit, which the kernel
// answers with a panic.
const (
	initEnd = `sync
poweroff -f
`
	initPanicEnd = `echo "init exits: the kernel panics" >/dev/console
exit 1
`
)

// entry is one member of the image tar.
type entry struct {
	typ  byte   // tar.TypeDir, TypeReg or TypeSymlink
	mode int64  // permission bits
	data []byte // content of a regular file, when src is empty
	src  string // path of a file whose content is streamed (the kernel is 14 MB)
	link string // symlink target
}

// WriteTarGz writes the image's root filesystem as a gzip'ed tar to w. Deterministic:
// same Kit + Options => same bytes (fixed mtimes, sorted entries, uid/gid 0).
func (k *Kit) WriteTarGz(w io.Writer, o Options) error {
	entries, err := k.entries(o)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	// A parent's name is a prefix of its children's, so sorting puts every directory
	// before its content, which extractors (ours included) expect.
	sort.Strings(names)

	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	for _, n := range names {
		if err := writeEntry(tw, n, entries[n]); err != nil {
			return fmt.Errorf("testimage: image %q: %w", o.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("testimage: image %q: %w", o.Name, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("testimage: image %q: %w", o.Name, err)
	}
	return nil
}

// entries lists the image's members by path (no leading "./" or "/", no trailing "/").
func (k *Kit) entries(o Options) (map[string]entry, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if k == nil || k.Busybox == "" || (!o.NoKernel && (k.Vmlinuz == "" || k.Initrd == "" || k.KernelVersion == "")) {
		return nil, fmt.Errorf("testimage: image %q: incomplete Kit (use Prepare)", o.Name)
	}
	initrd := k.Initrd
	if o.Storage {
		if k.StorageInitrd == "" {
			return nil, fmt.Errorf("testimage: image %q: a storage image needs the kit's storage initramfs (use PrepareStorage)", o.Name)
		}
		initrd = k.StorageInitrd
	}
	dir := entry{typ: tar.TypeDir, mode: 0o755}
	es := map[string]entry{
		"bin":            dir,
		"etc":            dir,
		"bin/busybox":    {typ: tar.TypeReg, mode: 0o755, src: k.Busybox},
		"etc/image-id":   {typ: tar.TypeReg, mode: 0o644, data: []byte(o.Marker + "\n")},
		"etc/os-release": {typ: tar.TypeReg, mode: 0o644, data: []byte(o.osRelease())},
	}
	for _, a := range rootApplets {
		es["bin/"+a] = entry{typ: tar.TypeSymlink, mode: 0o777, link: "busybox"}
	}
	if !o.NoKernel {
		if err := addOSEntries(es, o, k.KernelVersion, k.Vmlinuz, initrd); err != nil {
			return nil, err
		}
	}
	files, err := o.allFiles()
	if err != nil {
		return nil, err
	}
	// Sorted, so the first conflict reported is always the same.
	for _, p := range slices.Sorted(maps.Keys(files)) {
		f := files[p]
		e := entry{typ: tar.TypeReg, mode: int64(f.Mode.Perm()), data: f.Data}
		switch {
		case f.Mode&fs.ModeSymlink != 0:
			e = entry{typ: tar.TypeSymlink, mode: 0o777, link: string(f.Data)}
		case f.Mode.IsDir():
			e = entry{typ: tar.TypeDir, mode: int64(f.Mode.Perm())}
		case !f.Mode.IsRegular():
			return nil, fmt.Errorf("testimage: image %q: file %s: unsupported mode %v", o.Name, p, f.Mode)
		}
		if e.mode == 0 && e.typ != tar.TypeSymlink {
			e.mode = 0o644
			if e.typ == tar.TypeDir {
				e.mode = 0o755
			}
		}
		if old, ok := es[p]; ok && (old.typ == tar.TypeDir) != (e.typ == tar.TypeDir) {
			return nil, fmt.Errorf("testimage: image %q: file %s conflicts with the image's own %s", o.Name, p, p)
		}
		es[p] = e
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			old, ok := es[d]
			if ok && old.typ != tar.TypeDir {
				return nil, fmt.Errorf("testimage: image %q: file %s: parent %s is not a directory", o.Name, p, d)
			}
			if !ok {
				es[d] = dir
			}
		}
	}
	return es, nil
}

// addOSEntries adds what a bootable image has beyond a utility image: the mount points,
// /sbin/init, the kernel and the stage-1 initramfs.
func addOSEntries(es map[string]entry, o Options, ver, vmlinuz, initrd string) error {
	dir := entry{typ: tar.TypeDir, mode: 0o755}
	for _, d := range []string{"boot", "dev", "lib64", "run", "sbin"} {
		es[d] = dir
	}
	// proc and sys are read-only mount points, tmp is world-writable and sticky, as
	// on Debian.
	es["proc"] = entry{typ: tar.TypeDir, mode: 0o555}
	es["sys"] = entry{typ: tar.TypeDir, mode: 0o555}
	es["tmp"] = entry{typ: tar.TypeDir, mode: 0o1777}
	end := initEnd
	if o.PanicAfterMarker {
		end = initPanicEnd
	}
	es["sbin/init"] = entry{typ: tar.TypeReg, mode: 0o755, data: []byte(fmt.Sprintf(rootInit, o.InitScript, end))}
	// os-prober calls a partition Linux only when /lib*/ld*.so* exists; an empty
	// file is enough.
	es["lib64/ld-linux-x86-64.so.2"] = entry{typ: tar.TypeReg, mode: 0o755}
	kernel, err := kernelEntry(vmlinuz, o.CorruptKernel)
	if err != nil {
		return fmt.Errorf("testimage: image %q: %w", o.Name, err)
	}
	es["boot/vmlinuz-"+ver] = kernel
	es["boot/initrd.img-"+ver] = entry{typ: tar.TypeReg, mode: 0o644, src: initrd}
	return nil
}

// validate rejects options that would make a broken or ambiguous image.
func (o Options) validate() error {
	if o.Name == "" || strings.Trim(o.Name, "abcdefghijklmnopqrstuvwxyz0123456789._-") != "" {
		return fmt.Errorf("testimage: image name %q: want lowercase letters, digits, \".\", \"_\", \"-\"", o.Name)
	}
	if strings.ContainsAny(o.Marker, "\n\r") || (!o.NoKernel && strings.TrimSpace(o.Marker) == "") {
		return fmt.Errorf("testimage: image %q: marker %q: want one non-empty line", o.Name, o.Marker)
	}
	if o.Storage && o.NoKernel {
		return fmt.Errorf("testimage: image %q: a utility image (no kernel) has no initramfs to give storage support", o.Name)
	}
	if (o.PanicAfterMarker || o.CorruptKernel) && o.NoKernel {
		return fmt.Errorf("testimage: image %q: a utility image (no kernel) cannot panic or have a corrupt kernel", o.Name)
	}
	for _, t := range o.HostTools {
		if t == "" || strings.ContainsAny(t, "/\x00") {
			return fmt.Errorf("testimage: image %q: host tool %q: want a program name", o.Name, t)
		}
	}
	if strings.ContainsAny(o.PrettyName, "\n\r") {
		return fmt.Errorf("testimage: image %q: pretty name %q: want one line", o.Name, o.PrettyName)
	}
	for p := range o.Files {
		if !fs.ValidPath(p) || p == "." {
			return fmt.Errorf("testimage: image %q: file path %q: want a clean path relative to the root", o.Name, p)
		}
	}
	return nil
}

// allFiles returns the host tools' files with Files over them.
func (o Options) allFiles() (map[string]File, error) {
	if len(o.HostTools) == 0 {
		return o.Files, nil
	}
	tools := make([]hostTool, len(o.HostTools))
	for i, n := range o.HostTools {
		tools[i] = hostTool{name: n}
	}
	files, err := hostToolFiles(tools, hostToolDirs, "usr/sbin")
	if err != nil {
		return nil, fmt.Errorf("testimage: image %q: host tools: %w", o.Name, err)
	}
	maps.Copy(files, o.Files)
	return files, nil
}

// corruptSeed makes a corrupt kernel's bytes the same in every run, so equal options
// still give equal images.
var corruptSeed = [32]byte{'c', 'o', 'r', 'r', 'u', 'p', 't'}

// kernelEntry is the image's kernel: the kit's file, or with corrupt, as many
// pseudo-random bytes. Random bytes fail grub's and the kernel's checks (the "HdrS"
// magic of the x86 boot protocol at 0x202, the PE header) the way a torn or damaged
// file would, without matching any format by chance.
func kernelEntry(vmlinuz string, corrupt bool) (entry, error) {
	if !corrupt {
		return entry{typ: tar.TypeReg, mode: 0o644, src: vmlinuz}, nil
	}
	st, err := os.Stat(vmlinuz)
	if err != nil {
		return entry{}, err
	}
	data := make([]byte, st.Size())
	rand.NewChaCha8(corruptSeed).Read(data)
	return entry{typ: tar.TypeReg, mode: 0o644, data: data}, nil
}

// osRelease renders /etc/os-release; values are quoted as os-release(5) asks.
func (o Options) osRelease() string {
	pretty := o.PrettyName
	if pretty == "" {
		pretty = "Tiny test image " + o.Name
	}
	q := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`")
	return fmt.Sprintf("NAME=\"Tiny\"\nPRETTY_NAME=\"%s\"\nID=tiny-%s\nVERSION_ID=1\n", q.Replace(pretty), o.Name)
}

// writeEntry writes one tar member; directories get a trailing "/" as tar(1) writes them.
func writeEntry(tw *tar.Writer, name string, e entry) error {
	h := &tar.Header{
		Typeflag: e.typ,
		Name:     name,
		Linkname: e.link,
		Mode:     e.mode,
		ModTime:  imageMTime,
		Uname:    "root",
		Gname:    "root",
	}
	var r io.Reader
	switch {
	case e.typ == tar.TypeDir:
		h.Name += "/"
	case e.typ == tar.TypeReg && e.src != "":
		f, err := os.Open(e.src)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s (for %s) is not a regular file", e.src, name)
		}
		h.Size, r = st.Size(), f
	case e.typ == tar.TypeReg:
		h.Size, r = int64(len(e.data)), bytes.NewReader(e.data)
	}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if r == nil {
		return nil
	}
	if _, err := io.CopyN(tw, r, h.Size); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%s shrank while being read", e.src)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// WriteFile writes the image as a tar.gz at path (through a temporary file, so a reader
// never sees half an image) and returns the content's SHA-256.
func (k *Kit) WriteFile(path string, o Options) ([]byte, error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("writing image %s: %w", path, err)
	}
	h := sha256.New()
	if err := k.WriteTarGz(io.MultiWriter(f, h), o); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("writing image %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("writing image %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("writing image %s: %w", path, err)
	}
	return h.Sum(nil), nil
}
