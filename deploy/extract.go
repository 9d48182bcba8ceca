package deploy

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path"
	"strings"
)

// ExtractOptions tune extraction.
type ExtractOptions struct {
	// Sparse makes runs of all-zero 4 KiB blocks in regular files holes (seek instead of write).
	Sparse bool
	Log    *slog.Logger // nil: no logging
}

// ExtractStats counts what was extracted. Devices counts character and block devices and
// FIFOs; Bytes is the data of regular files, holes included.
type ExtractStats struct{ Files, Dirs, Symlinks, Hardlinks, Devices, Bytes int64 }

// ErrHostile is matched by every *HostileEntryError.
var ErrHostile = errors.New("hostile archive entry")

// HostileEntryError is an archive entry that tries, or could be used, to write outside
// the extraction root. Its name and the reason are what the deploy log shows.
type HostileEntryError struct {
	Entry  string // the entry's name as the archive has it
	Reason string
}

func (e *HostileEntryError) Error() string {
	return fmt.Sprintf("hostile archive entry %q: %s", e.Entry, e.Reason)
}

// Is makes errors.Is(err, ErrHostile) and errors.Is(err, ErrImage) true.
func (e *HostileEntryError) Is(target error) bool { return target == ErrHostile || target == ErrImage }

// Sizes of the extractor's I/O: one data buffer reused for every file (big reads keep the
// decoder and the syscall count efficient), the most one pwrite writes, and the block size
// that Sparse tests for zeros. Writes are cut to maxWrite because the kernel copies a
// 1 MiB write into the page cache more slowly than four of 256 KiB: on ext4 (Linux 6.18,
// which caches file data in large folios) the copy of a 1.2 GB tree's data took 0.6–1.0 s
// of system time with 1 MiB writes and 0.2–0.3 s with 256 KiB ones, while the extra
// pwrites cost nothing measurable.
const (
	extractBufSize = 1 << 20
	maxWrite       = 256 << 10
	tarReadAhead   = 256 << 10
	sparseBlock    = 4096
)

// ExtractTar extracts a tar stream into root, which must be an existing directory (the mounted
// image root plus the image's target). Everything stays inside root: entry names are cleaned
// and any name with ".." components or that is absolute is refused (leading "./" and "/" are
// NOT silently stripped for "..": "../x" is hostile; a leading "/" on an otherwise clean name
// like "/etc/passwd" IS accepted as "etc/passwd", as GNU tar does, with no escape possible);
// parent directories are resolved with openat2(RESOLVE_IN_ROOT) (golang.org/x/sys/unix) so a
// symlink in the tree (even an absolute one, e.g. var/run -> /run, which is legitimate and is
// followed as if root were /) can never lead outside root; hard links must name a regular file
// already inside root; a symlink to "/" followed by an entry under it lands inside root (chroot
// semantics) — and the tests must prove nothing is created outside. A hostile entry aborts the
// whole extraction with a *HostileEntryError naming the entry.
// It keeps owner and group (numeric ids from the tar; never look up names), mode including
// setuid/setgid/sticky, mtime (also of symlinks, via utimensat AT_SYMLINK_NOFOLLOW, and of
// directories, fixed up at the end since creating children changes them), hard links, symlinks,
// character and block devices and FIFOs (mknodat), and xattrs from PAX records SCHILY.xattr.*
// (including security.capability and security.selinux). Order per file: write data, fchown,
// fchmod, set xattrs (security.capability last), set times — the kernel clears
// capabilities and setuid bits on chown. Existing files in root are replaced (the image
// root is normally empty, but a kept volume may have content): a regular file replaces a
// file or symlink, never follows it. Sparse files from GNU/PAX sparse headers come expanded from archive/tar: with
// Sparse set, zero blocks become holes.
//
// Beyond that contract: an entry whose directory is reached through a symlink whose target
// climbs above the root ("rel -> ../../..") or through a symlink to nothing in the root
// ("evil -> /elsewhere" then "evil/x") is hostile too, since no archive of a real tree
// has such entries; a hard link may also name a symlink, FIFO or device already in root
// (anything but a directory). Owners are set only when running as root, as GNU tar does.
// Nothing is fsynced (one syncfs of the filesystem afterwards is the caller's job). After
// the end-of-archive marker r is read to its end, so a checksum or decompressor behind it
// sees the whole stream.
//
// The archive must end with its end-of-archive marker (two zero blocks): a stream that
// stops between entries, or after a single zero block, is a truncated image (an upload
// cut short, or a tar made from a cut stream and then compressed whole), not a smaller
// one. Errors say whose fault they are: errors.Is(err, ErrImage) for everything about the
// archive and the stream under it (a read or decompression failure, a truncation, a
// malformed or hostile entry, a tree the entries cannot form, such as a symlink loop, a
// file where a directory must be, a non-empty directory in the way, names too long, or
// owners out of range), errors.Is(err, ErrWrite) when the target filesystem fails or is
// full or read-only. When ctx is done the error is left unclassified.
func ExtractTar(ctx context.Context, r io.Reader, root string, opts ExtractOptions) (ExtractStats, error) {
	x, err := openExtractor(root, opts)
	if err != nil {
		return ExtractStats{}, err
	}
	defer x.close()
	if err := x.extract(ctx, r); err != nil {
		return x.stats, classify(ctx, treeFault, err)
	}
	x.log.DebugContext(ctx, "tar extracted", "root", root, "files", x.stats.Files, "dirs", x.stats.Dirs,
		"symlinks", x.stats.Symlinks, "hardlinks", x.stats.Hardlinks, "devices", x.stats.Devices, "bytes", x.stats.Bytes)
	return x.stats, nil
}

// extract extracts every entry up to the end-of-archive marker, then reads r to its end.
// Failures of reading are tagged as image errors here; those of the filesystem are
// left for ExtractTar to classify by their errno.
func (x *extractor) extract(ctx context.Context, r io.Reader) error {
	br := bufio.NewReaderSize(r, tarReadAhead)
	end := &endReader{r: br}
	tr := tar.NewReader(end)
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			if end.emptyEOF {
				return classify(ctx, streamFault, fmt.Errorf("the tar ends after %d entries without its end-of-archive marker: truncated image", n))
			}
			break
		}
		// With GODEBUG tarinsecurepath=0 archive/tar flags names we judge ourselves.
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return classify(ctx, streamFault, fmt.Errorf("reading the tar after %d entries: %w", n, err))
		}
		if err := x.entry(ctx, hdr, tr); err != nil {
			return err
		}
	}
	if err := x.fixDirTimes(); err != nil {
		return err
	}
	if _, err := io.CopyBuffer(io.Discard, br, x.buf); err != nil {
		return classify(ctx, streamFault, fmt.Errorf("reading past the end of the tar: %w", err))
	}
	return nil
}

// endReader is what archive/tar reads from. archive/tar returns io.EOF both after the
// end-of-archive marker and when its input ends where the next header should start
// (also after a lone zero block); it stops reading right after the marker's second
// block. So the marker was read only if the last Read before that io.EOF delivered
// bytes: emptyEOF is set when the last Read returned io.EOF and nothing else.
type endReader struct {
	r        io.Reader
	emptyEOF bool
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if len(p) > 0 {
		e.emptyEOF = n == 0 && err == io.EOF
	}
	return n, err
}

// cleanName turns an entry name (or a hard link's target) into a path relative to the
// root, "" for the root itself. A non-empty reason means the name is hostile.
func cleanName(name string) (p, reason string) {
	if name == "" {
		return "", "empty name"
	}
	rel := strings.TrimLeft(name, "/")
	for c := range strings.SplitSeq(rel, "/") {
		if c == ".." {
			return "", `the name has a ".." component`
		}
	}
	p = path.Clean(rel)
	if p == "." {
		p = ""
	}
	return p, ""
}

// splitName splits a cleaned, non-empty path into its directory ("" for the root) and
// last component.
func splitName(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// entry extracts one archive member.
func (x *extractor) entry(ctx context.Context, hdr *tar.Header, tr *tar.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader, 'V':
		// A PAX global header or a GNU volume label: no file to make.
		x.log.DebugContext(ctx, "tar: skipping entry", "entry", hdr.Name, "type", string(hdr.Typeflag))
		return nil
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeLink,
		tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return blame(ErrImage, fmt.Errorf("extracting %q: unsupported tar entry type %q", hdr.Name, hdr.Typeflag))
	}
	p, reason := cleanName(hdr.Name)
	if reason != "" {
		return &HostileEntryError{Entry: hdr.Name, Reason: reason}
	}
	if !x.warnedACL {
		if _, ok := hdr.PAXRecords["SCHILY.acl.access"]; ok {
			// GNU tar --acls stores ACLs as text records, not as xattrs; we do not apply
			// them (root filesystems rarely carry any). Say so once.
			x.log.WarnContext(ctx, "tar: the archive has POSIX ACLs, which are not applied", "entry", hdr.Name)
			x.warnedACL = true
		}
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > math.MaxUint32-1 || hdr.Gid > math.MaxUint32-1 {
		return blame(ErrImage, fmt.Errorf("extracting %q: invalid owner %d:%d", hdr.Name, hdr.Uid, hdr.Gid))
	}
	var target string
	if hdr.Typeflag == tar.TypeLink {
		// Judged before anything is created for the entry.
		if target, reason = cleanName(hdr.Linkname); reason != "" {
			return &HostileEntryError{Entry: hdr.Name, Reason: fmt.Sprintf("hard link target %q: %s", hdr.Linkname, reason)}
		}
		if target == "" {
			return &HostileEntryError{Entry: hdr.Name, Reason: "a hard link to the extraction root"}
		}
	}
	if p == "" {
		if hdr.Typeflag != tar.TypeDir {
			return &HostileEntryError{Entry: hdr.Name, Reason: "it would replace the extraction root"}
		}
		return x.rootDir(hdr)
	}
	dir, base := splitName(p)
	pfd, err := x.parentDir(hdr.Name, dir, true)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.dir(hdr, p, pfd, base)
	case tar.TypeSymlink:
		return x.symlink(hdr, pfd, base)
	case tar.TypeLink:
		return x.hardlink(hdr, target, pfd, base)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return x.node(hdr, pfd, base)
	}
	return x.file(ctx, hdr, tr, pfd, base)
}
