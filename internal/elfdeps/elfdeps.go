// Package elfdeps finds, in pure Go, the loader and shared libraries a dynamically
// linked host program needs, so an initramfs can carry the program without ldd.
package elfdeps

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultLibDirs are where the host's dynamic loader looks for libraries when a program
// names none (Debian's multiarch directories first, as in ld.so's built-in list). An
// initramfs needs no /etc/ld.so.cache when it keeps the same directories.
var DefaultLibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// ToolDirs are searched, in order, for the host programs an initramfs copies.
var ToolDirs = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// FindProgram returns the first dirs/name that is an executable regular file, or "".
func FindProgram(name string, dirs []string) string {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Resolver finds, in pure Go, the files a dynamically linked program needs to start:
// its loader (PT_INTERP) and its DT_NEEDED libraries, recursively. ldd would run the
// host's loader on every file (for some files that means running their code) and report
// what ld.so.cache says; reading the ELF headers does neither, and shows where each
// library is found in the directories an initramfs keeps.
type Resolver struct {
	Dirs []string // search path after a library's own DT_RUNPATH/DT_RPATH
}

// elfInfo is what the resolver reads from one ELF file.
type elfInfo struct {
	class   elf.Class
	machine elf.Machine
	interp  string   // PT_INTERP, "" for static programs and most libraries
	needed  []string // DT_NEEDED
	rpath   []string // DT_RUNPATH, else DT_RPATH, with $ORIGIN expanded
}

// errNotELF is returned by readELF for files that are not ELF (scripts, data).
var errNotELF = errors.New("not an ELF file")

// readELF reads the dynamic-linking facts of the ELF file at p.
func readELF(p string) (*elfInfo, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, []byte(elf.ELFMAG)) {
		return nil, errNotELF
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("reading ELF %s: %w", p, err)
	}
	info := &elfInfo{class: ef.Class, machine: ef.Machine}
	for _, prog := range ef.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(prog.Open())
		if err != nil {
			return nil, fmt.Errorf("reading the PT_INTERP of %s: %w", p, err)
		}
		info.interp = string(bytes.TrimRight(b, "\x00"))
	}
	// Relocatable objects (grub's .mod files, kernel modules) have no dynamic section.
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return info, nil
	}
	if info.needed, err = ef.ImportedLibraries(); err != nil {
		return nil, fmt.Errorf("reading DT_NEEDED of %s: %w", p, err)
	}
	rpath, err := ef.DynString(elf.DT_RUNPATH)
	if err == nil && len(rpath) == 0 {
		rpath, err = ef.DynString(elf.DT_RPATH)
	}
	if err != nil {
		return nil, fmt.Errorf("reading DT_RUNPATH of %s: %w", p, err)
	}
	origin := filepath.Dir(p)
	for _, rp := range rpath {
		for _, d := range strings.Split(rp, ":") {
			d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
			// $LIB and $PLATFORM depend on the loader's build: a program that uses them
			// is found through the default directories or not at all.
			if d != "" && !strings.Contains(d, "$") {
				info.rpath = append(info.rpath, d)
			}
		}
	}
	return info, nil
}

// Needs returns the host paths of the files the ELF program or library at p needs at
// run time (loader first, then libraries in the order found), as found in the search
// directories: a path may be a symlink, which the caller keeps along with its target.
// A file that is not ELF, or is ELF without dynamic linking, needs nothing. A library
// that cannot be found is an error naming it and its user.
func (r *Resolver) Needs(p string) ([]string, error) {
	root, err := readELF(p)
	if errors.Is(err, errNotELF) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// Files for another machine (grub's i386 images) are data here, not programs.
	if root.class != elf.ELFCLASS64 || root.machine != elf.EM_X86_64 {
		return nil, nil
	}
	var out []string
	seen := map[string]bool{}
	if root.interp != "" {
		if _, err := os.Stat(root.interp); err != nil {
			return nil, fmt.Errorf("%s: its loader: %w", p, err)
		}
		out = append(out, root.interp)
		seen[root.interp] = true
	}
	type job struct {
		user string
		info *elfInfo
	}
	queue := []job{{p, root}}
	for len(queue) > 0 {
		j := queue[0]
		queue = queue[1:]
		for _, lib := range j.info.needed {
			found, info, err := r.find(lib, j.info)
			if err != nil {
				return nil, fmt.Errorf("%s needs %s: %w", j.user, lib, err)
			}
			if seen[found] {
				continue
			}
			seen[found] = true
			out = append(out, found)
			queue = append(queue, job{found, info})
		}
	}
	return out, nil
}

// find looks for the library lib as the loader would for a user whose facts are in
// user: a name with a slash is a path; otherwise the user's run path, then the default
// directories, skipping files of another ELF class or machine (a 32-bit library of the
// same name).
func (r *Resolver) find(lib string, user *elfInfo) (string, *elfInfo, error) {
	var cands []string
	if strings.Contains(lib, "/") {
		cands = []string{lib}
	} else {
		for _, d := range slices.Concat(user.rpath, r.Dirs) {
			cands = append(cands, filepath.Join(d, lib))
		}
	}
	for _, c := range cands {
		if _, err := os.Stat(c); err != nil {
			continue
		}
		info, err := readELF(c)
		if err != nil {
			continue
		}
		if info.class == user.class && info.machine == user.machine {
			return c, info, nil
		}
	}
	return "", nil, fmt.Errorf("not found in %s", strings.Join(slices.Concat(user.rpath, r.Dirs), ":"))
}
