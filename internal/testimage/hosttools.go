package testimage

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/provisioner/provisioner/internal/elfdeps"
)

// hostTool is a host program copied into an image or initramfs, with its Debian package
// for the error that names what to install ("" when the caller does not know it).
type hostTool struct{ name, pkg string }

// hostToolDirs are searched, in order, for Options.HostTools; a variable so tests can
// point it elsewhere.
var hostToolDirs = elfdeps.ToolDirs

// hostToolFiles reads the tools found in dirs, under binDir, and the loader and
// libraries they need, by archive path. Each library keeps the path it was found at, in
// a directory the loader searches by default, so the tree needs no ld.so.cache. Every
// missing tool is named in one error.
func hostToolFiles(tools []hostTool, dirs []string, binDir string) (map[string]File, error) {
	var progs, missing []string
	for _, t := range tools {
		p := elfdeps.FindProgram(t.name, dirs)
		switch {
		case p != "":
			progs = append(progs, p)
		case t.pkg != "":
			missing = append(missing, fmt.Sprintf("%s (package %s)", t.name, t.pkg))
		default:
			missing = append(missing, t.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("not found in %s: %s", strings.Join(dirs, ":"), strings.Join(missing, ", "))
	}
	files := map[string]File{}
	r := &elfdeps.Resolver{Dirs: libDirs}
	for _, p := range progs {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		files[binDir+"/"+filepath.Base(p)] = File{Data: data, Mode: 0o755}
		libs, err := r.Needs(p)
		if err != nil {
			return nil, err
		}
		for _, l := range libs {
			name := strings.TrimPrefix(filepath.Clean(l), "/")
			if _, done := files[name]; done {
				continue
			}
			// A library found through a symlink (libudev.so.1 -> libudev.so.1.7.5) is
			// stored under the name the loader asks for, with the target's bytes.
			data, err := os.ReadFile(l)
			if err != nil {
				return nil, fmt.Errorf("%s needs %w", p, err)
			}
			files[name] = File{Data: data, Mode: 0o755}
		}
	}
	return files, nil
}
