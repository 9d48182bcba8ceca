package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/provisioner/provisioner/internal/confine"
	"golang.org/x/sys/unix"
)

// EtcManifestPath is where a deploy and a live reload record the image's /etc as they
// wrote it, inside the image root: a later live reload tells a file the node changed
// from one it did not by comparing with it. It is under /var, which a live reload does
// not sync, so the sync never removes it.
const EtcManifestPath = "/var/lib/provisioner/etc.manifest"

// EtcFile is one regular file or symlink of /etc as deployed.
type EtcFile struct {
	Path   string `json:"path"`             // "/etc/ssh/sshd_config"
	SHA256 string `json:"sha256,omitempty"` // a regular file's content
	Link   string `json:"link,omitempty"`   // a symlink's target
	Mode   uint32 `json:"mode"`             // st_mode: the type and the permission bits
	UID    uint32 `json:"uid"`
	GID    uint32 `json:"gid"`
}

// EtcManifest is the image's /etc as deployed, by path.
type EtcManifest struct {
	Version int       `json:"version"`
	Files   []EtcFile `json:"files"`
}

// ScanEtc records the regular files and symlinks under root's /etc (none when it has
// none); it does not follow symlinks and does not leave root's filesystem.
func ScanEtc(root string) (*EtcManifest, error) {
	m := &EtcManifest{Version: 1, Files: []EtcFile{}}
	var rootSt unix.Stat_t
	if err := unix.Lstat(root, &rootSt); err != nil {
		return nil, fmt.Errorf("etc manifest: %w", err)
	}
	top := filepath.Join(root, "etc")
	err := filepath.WalkDir(top, func(p string, de fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == top {
			return filepath.SkipAll
		}
		if err != nil {
			return err
		}
		if de.IsDir() {
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			if st.Dev != rootSt.Dev {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		f, ok, err := etcFileAt(p, "/"+filepath.ToSlash(rel))
		if err != nil || !ok {
			return err
		}
		m.Files = append(m.Files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("etc manifest of %s: %w", root, err)
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	return m, nil
}

// etcFileAt describes the regular file or symlink at host path p, named rel; ok is false
// for anything else (a device, a FIFO).
func etcFileAt(p, rel string) (EtcFile, bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return EtcFile{}, false, err
	}
	f := EtcFile{Path: rel, Mode: st.Mode, UID: st.Uid, GID: st.Gid}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		t, err := os.Readlink(p)
		if err != nil {
			return EtcFile{}, false, err
		}
		f.Link = t
	case unix.S_IFREG:
		sum, err := fileSHA256(p)
		if err != nil {
			return EtcFile{}, false, err
		}
		f.SHA256 = sum
	default:
		return EtcFile{}, false, nil
	}
	return f, true, nil
}

// fileSHA256 hashes the regular file at p without following a symlink there.
func fileSHA256(p string) (string, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ReadEtcManifest reads the manifest in the image root root; nil without error when
// there is none.
func ReadEtcManifest(root string) (*EtcManifest, error) {
	d, err := confine.Open(root)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	b, err := d.ReadFile(EtcManifestPath[1:], 64<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s in %s: %w", EtcManifestPath, root, err)
	}
	var m EtcManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading %s in %s: %w", EtcManifestPath, root, err)
	}
	return &m, nil
}

// WriteEtcManifest writes m into the image root root, atomically; the directories above
// it are made (real directories only: a symlink planted there is refused).
func WriteEtcManifest(root string, m *EtcManifest) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	d, err := confine.Open(root)
	if err != nil {
		return fmt.Errorf("writing %s: %w", EtcManifestPath, err)
	}
	defer d.Close()
	if err := d.MkdirAll(path.Dir(EtcManifestPath[1:]), 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", EtcManifestPath, err)
	}
	if err := d.WriteFileAtomic(EtcManifestPath[1:], append(b, '\n'), 0o644, nil); err != nil {
		return fmt.Errorf("writing %s: %w", EtcManifestPath, err)
	}
	return nil
}

// byPath indexes m's files by path; nil for a nil manifest.
func (m *EtcManifest) byPath() map[string]EtcFile {
	if m == nil {
		return nil
	}
	out := make(map[string]EtcFile, len(m.Files))
	for _, f := range m.Files {
		out[f.Path] = f
	}
	return out
}

// etcManifest writes the manifest of the image's /etc after its fstab, for a whole-OS
// image (target /) that has an /etc.
func (dp *deployment) etcManifest(ctx context.Context) error {
	if dp.im.Target != "/" {
		return nil
	}
	if fi, err := os.Lstat(filepath.Join(dp.root, "etc")); err != nil || !fi.IsDir() {
		return nil
	}
	m, err := ScanEtc(dp.root)
	if err != nil {
		return classify(ctx, treeFault, err)
	}
	if err := WriteEtcManifest(dp.root, m); err != nil {
		return classify(ctx, treeFault, err)
	}
	return nil
}
