package bootloader

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/provisioner/provisioner/internal/confine"
)

// Kernel is what a deployed root boots: paths as seen from the image's root
// ("/boot/vmlinuz-6.1.0-56-cloud-amd64").
type Kernel struct {
	// Path is the kernel image, Initrd its initial ramdisk ("" when the image ships none).
	Path, Initrd string
	// Version is the kernel file name without its "vmlinuz-"/"vmlinux-" prefix.
	Version string
	// OSName is the image's PRETTY_NAME (or NAME) from os-release, "Linux" when it has none.
	OSName string
}

// maxOSRelease bounds how much of an os-release file is read: the file comes from an
// untrusted image and a real one is well under a kilobyte.
const maxOSRelease = 64 << 10

// ProbeRoot finds the newest kernel in root/boot (vmlinuz-* or vmlinux-*, version-sorted
// like `sort -V`, ignoring *.old, *.bak and rescue kernels unless nothing else), its
// matching initrd (initrd.img-V, initramfs-V.img, initrd-V.img, initrd-V), and the OS name
// (PRETTY_NAME from etc/os-release, else usr/lib/os-release, else NAME, else "Linux").
// It only reads: root is a mounted image tree and is not trusted, so every path is
// resolved inside root (a symlink pointing outside is never followed) and only regular
// files are opened, without blocking (a FIFO at etc/os-release cannot hang the deploy).
// Without a kernel it returns an error naming root/boot.
func ProbeRoot(root string) (Kernel, error) {
	r, err := confine.Open(root)
	if err != nil {
		return Kernel{}, fmt.Errorf("probing kernels: %w", err)
	}
	defer r.Close()
	bootDir := path.Join(root, "boot")

	names, err := r.ReadDirNames("boot")
	if err != nil {
		return Kernel{}, fmt.Errorf("no kernel in %s: %w", bootDir, err)
	}
	sort.Strings(names)
	var preferred, fallback []string
	for _, n := range names {
		if !strings.HasPrefix(n, "vmlinuz-") && !strings.HasPrefix(n, "vmlinux-") {
			continue
		}
		// Stat through the root: a link escaping it (vmlinuz-9 -> /etc/shadow) or a
		// dangling one fails here and the name is simply not a kernel.
		if !isRegular(r, "boot/"+n) {
			continue
		}
		if strings.HasSuffix(n, ".old") || strings.HasSuffix(n, ".bak") || strings.Contains(n, "rescue") {
			fallback = append(fallback, n)
			continue
		}
		preferred = append(preferred, n)
	}
	cands := preferred
	if len(cands) == 0 {
		cands = fallback
	}
	if len(cands) == 0 {
		return Kernel{}, fmt.Errorf("no kernel (vmlinuz-* or vmlinux-*) in %s", bootDir)
	}
	// Names are compared on their version only, so vmlinux-6.2 beats vmlinuz-6.1; the
	// full name breaks ties so the choice never depends on directory order.
	sort.Slice(cands, func(i, j int) bool {
		if c := verCmp(cands[i][len("vmlinuz-"):], cands[j][len("vmlinuz-"):]); c != 0 {
			return c < 0
		}
		return cands[i] < cands[j]
	})
	best := cands[len(cands)-1]
	k := Kernel{Path: "/boot/" + best, Version: best[len("vmlinuz-"):]}
	for _, n := range []string{"initrd.img-" + k.Version, "initramfs-" + k.Version + ".img", "initrd-" + k.Version + ".img", "initrd-" + k.Version} {
		if isRegular(r, "boot/"+n) {
			k.Initrd = "/boot/" + n
			break
		}
	}
	if k.OSName, err = osName(r); err != nil {
		return Kernel{}, err
	}
	return k, nil
}

// isRegular reports whether name, symlinks followed inside r only, is a regular file.
func isRegular(r *confine.Dir, name string) bool {
	fi, err := r.Stat(name)
	return err == nil && fi.Mode().IsRegular()
}

// osName reads the OS name the way os-release(5) says: /etc/os-release, or
// /usr/lib/os-release when the former does not exist; PRETTY_NAME, else NAME. An
// os-release that is not a regular file (a FIFO or device planted by the image) is an
// error matching confine.ErrUnsafe; one that cannot be read otherwise gives "Linux".
func osName(r *confine.Dir) (string, error) {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		vars, err := readOSRelease(r, p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if errors.Is(err, confine.ErrUnsafe) {
			return "", fmt.Errorf("reading the OS name: %w", err)
		}
		if err != nil {
			break
		}
		for _, key := range []string{"PRETTY_NAME", "NAME"} {
			if v := cleanName(vars[key]); v != "" {
				return v, nil
			}
		}
		break
	}
	return "Linux", nil
}

// readOSRelease parses the shell-like KEY=value lines of an os-release file.
func readOSRelease(r *confine.Dir, name string) (map[string]string, error) {
	f, err := r.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(f, maxOSRelease))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		vars[strings.TrimSpace(k)] = unquoteShell(strings.TrimSpace(v))
	}
	return vars, sc.Err()
}

// unquoteShell undoes the quoting os-release values use: "double" with backslash
// escapes, 'single', or bare.
func unquoteShell(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return v[1 : len(v)-1]
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("\\\"$`", v[i+1]) >= 0 {
				i++
			}
			b.WriteByte(v[i])
		}
		return b.String()
	}
	return v
}

// cleanName drops control characters: the name becomes a menu title, and a newline or
// escape sequence from an image must not reach grub.cfg or a terminal.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// verCmp compares two version strings as `sort -V` (GNU filevercmp's verrevcmp) does:
// runs of digits compare numerically, other runs character by character with letters
// before non-letters and '~' before everything, even the end of the string.
func verCmp(a, b string) int {
	order := func(s string, i int) int {
		if i >= len(s) {
			return 0
		}
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			return 0
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			return int(c)
		case c == '~':
			return -1
		default:
			return int(c) + 256
		}
	}
	isDigit := func(s string, i int) bool { return i < len(s) && s[i] >= '0' && s[i] <= '9' }
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		firstDiff := 0
		for (i < len(a) && !isDigit(a, i)) || (j < len(b) && !isDigit(b, j)) {
			ac, bc := order(a, i), order(b, j)
			if ac != bc {
				return ac - bc
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		for isDigit(a, i) && isDigit(b, j) {
			if firstDiff == 0 {
				firstDiff = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if isDigit(a, i) {
			return 1
		}
		if isDigit(b, j) {
			return -1
		}
		if firstDiff != 0 {
			return firstDiff
		}
	}
	return 0
}
