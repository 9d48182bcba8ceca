package engine

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/partition"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// rootfsTar builds a small OS tree: /etc with os-release, a binary-ish file, a symlink
// and a nested directory. marker tells the images apart.
func rootfsTar(t *testing.T, marker string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	add := func(h *tar.Header, body string) {
		h.ModTime = mtime
		h.Size = int64(len(body))
		if h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeDir {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "etc/os-release", Typeflag: tar.TypeReg, Mode: 0o644}, "PRETTY_NAME=\""+marker+"\"\n")
	add(&tar.Header{Name: "etc/fstab", Typeflag: tar.TypeReg, Mode: 0o644}, "# the image's own fstab, to be replaced\n")
	add(&tar.Header{Name: "usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "usr/bin/hello", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 0, Gid: 0}, strings.Repeat("ELF "+marker, 5000))
	add(&tar.Header{Name: "bin", Typeflag: tar.TypeSymlink, Linkname: "usr/bin", Mode: 0o777}, "")
	add(&tar.Header{Name: "srv/shared/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "srv/shared/from-" + marker, Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1000, Gid: 1000}, marker)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zstdBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := zstd.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func gzipBytes(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// imageServer serves named blobs on loopback. cut[name] > 0 drops the connection after
// that many body bytes of the first request; noResume makes every later request fail.
type imageServer struct {
	*httptest.Server
	blobs    map[string][]byte
	cut      map[string]int
	noResume map[string]bool
	requests atomic.Int32
}

func newImageServer(t *testing.T) *imageServer {
	s := &imageServer{blobs: map[string][]byte{}, cut: map[string]int{}, noResume: map[string]bool{}}
	first := map[string]bool{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		name := strings.TrimPrefix(r.URL.Path, "/")
		blob, ok := s.blobs[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if n := s.cut[name]; n > 0 && !first[name] {
			first[name] = true
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			w.Header().Set("Accept-Ranges", "bytes")
			w.WriteHeader(http.StatusOK)
			w.Write(blob[:n])
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
				}
			}
			return
		}
		if s.noResume[name] && first[name] {
			http.Error(w, "gone", http.StatusServiceUnavailable)
			return
		}
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(blob))
	}))
	t.Cleanup(s.Close)
	return s
}

// deployDoc: two OS images on one disk, a volume both mount, and a utility image.
func deployDoc(base, checksumA, extra string) string {
	return fmt.Sprintf(`{
  "images": [
    {"name": "alpha", "url": "%[1]s/alpha.tar.zst", "target": "/", "boot": true%[2]s},
    {"name": "beta", "url": "%[1]s/beta.tar.gz", "target": "/", "checksum": "%[1]s/SHA256SUMS"},
    {"name": "tools", "url": "%[1]s/tools.tar", "target": "/srv/shared/tools"}%[3]s],
  "boot_mode": "bios",
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "1 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "200 MiB", "images": ["alpha"]},
    {"type": "partition", "mount": "/", "file_system": "xfs", "size": "320 MiB", "images": ["beta"]},
    {"type": "partition", "mount": "/srv/shared", "file_system": "ext4", "size": "100 MiB", "images": ["alpha", "beta"]},
    {"type": "partition", "mount": "/srv/shared/tools", "file_system": "ext4", "size": "64 MiB", "images": ["alpha", "beta", "tools"]},
    {"type": "partition", "mount": "swap", "file_system": "swap", "size": "64 MiB", "images": ["alpha", "beta"]}]}]
}`, base, checksumA, extra)
}

func mountedUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}

type deployCase struct {
	dir, tmp string
	srv      *imageServer
	alpha    []byte
}

func newDeployCase(t *testing.T) *deployCase {
	needLoop(t, "mke2fs", "mkfs.xfs", "mkswap")
	c := &deployCase{dir: t.TempDir(), tmp: t.TempDir(), srv: newImageServer(t)}
	c.alpha = zstdBytes(t, rootfsTar(t, "alpha"))
	beta := gzipBytes(rootfsTar(t, "beta"))
	var tools bytes.Buffer
	tw := tar.NewWriter(&tools)
	tw.WriteHeader(&tar.Header{Name: "bin/tool", Typeflag: tar.TypeReg, Mode: 0o755, Size: 4, ModTime: time.Unix(1, 0)})
	tw.Write([]byte("tool"))
	tw.Close()
	c.srv.blobs["alpha.tar.zst"] = c.alpha
	c.srv.blobs["beta.tar.gz"] = beta
	c.srv.blobs["tools.tar"] = tools.Bytes()
	c.srv.blobs["SHA256SUMS"] = []byte(fmt.Sprintf("%x  alpha.tar.zst\n%x  beta.tar.gz\n", sha256.Sum256(c.alpha), sha256.Sum256(beta)))
	return c
}

func (c *deployCase) deploy(t *testing.T, doc string) (*partition.Layout, string, error) {
	t.Helper()
	spec := loadString(t, doc)
	img := filepath.Join(c.dir, "vda.img")
	os.Remove(img)
	l, err := Deploy(context.Background(), spec, DeployOptions{
		PartitionOptions: PartitionOptions{
			Targets: []Target{{Name: "vda", Path: img}}, Sizes: map[string]uint64{"vda": 1 << 30},
			Seed: "deploy", Env: HostEnv(nil),
		},
		Fetcher: &deploy.Fetcher{Backoff: func(int) time.Duration { return time.Millisecond }},
		TmpDir:  c.tmp,
	})
	if m := mountedUnder(t, c.tmp); len(m) > 0 {
		t.Errorf("still mounted after deploy: %v", m)
	}
	noLoopFor(t, img)
	return l, img, err
}

func TestDeployImages(t *testing.T) {
	c := newDeployCase(t)
	sum := fmt.Sprintf(`, "checksum": "sha256:%x"`, sha256.Sum256(c.alpha))
	l, img, err := c.deploy(t, deployDoc(c.srv.URL, sum, ""))
	if err != nil {
		t.Fatal(err)
	}
	d := l.Disks[0]
	files := map[string]string{}
	for _, im := range l.Images {
		root := findFS(l, im.RootUUID)
		if im.Target != "/" {
			continue
		}
		withPartition(t, img, d, root.Number, func(t *testing.T, mnt string) {
			fstab, err := os.ReadFile(filepath.Join(mnt, "etc/fstab"))
			if err != nil || string(fstab) != im.Fstab {
				t.Errorf("image %s: /etc/fstab differs from the plan (%v):\n%s\nplan:\n%s", im.Name, err, fstab, im.Fstab)
			}
			goldenFstab(t, im.Name, fstab)
			b, err := os.ReadFile(filepath.Join(mnt, "etc/os-release"))
			files[im.Name] = string(b)
			fi, err2 := os.Lstat(filepath.Join(mnt, "usr/bin/hello"))
			if err != nil || err2 != nil || fi.Mode()&os.ModeSetuid == 0 {
				t.Errorf("image %s: os-release %v, hello %v %v", im.Name, err, fi, err2)
			}
			if target, err := os.Readlink(filepath.Join(mnt, "bin")); err != nil || target != "usr/bin" {
				t.Errorf("image %s: bin -> %q, %v", im.Name, target, err)
			}
		})
	}
	if !strings.Contains(files["alpha"], `"alpha"`) || !strings.Contains(files["beta"], `"beta"`) {
		t.Errorf("roots hold %q", files)
	}
	// The shared volume holds both images' files; the utility volume the tool.
	shared, tools := findMount(l, "/srv/shared"), findMount(l, "/srv/shared/tools")
	withPartition(t, img, d, shared.Number, func(t *testing.T, mnt string) {
		for _, name := range []string{"from-alpha", "from-beta"} {
			fi, err := os.Stat(filepath.Join(mnt, name))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("shared %s: %v %v", name, fi, err)
			}
		}
	})
	withPartition(t, img, d, tools.Number, func(t *testing.T, mnt string) {
		if b, err := os.ReadFile(filepath.Join(mnt, "bin/tool")); err != nil || string(b) != "tool" {
			t.Errorf("utility image: %q %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(mnt, "etc/fstab")); !os.IsNotExist(err) {
			t.Errorf("a utility image got an fstab: %v", err)
		}
	})
}

func findFS(l *partition.Layout, uuid string) *partition.Partition {
	for _, p := range l.Disks[0].Partitions {
		if p.FS != nil && p.FS.UUID == uuid {
			return p
		}
	}
	return nil
}

func findMount(l *partition.Layout, mount string) *partition.Partition {
	for _, p := range l.Disks[0].Partitions {
		if p.FS != nil && p.FS.Mount == mount {
			return p
		}
	}
	return nil
}

func goldenFstab(t *testing.T, image string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "fstab-"+image+".golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/engine -update creates it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("fstab of %s differs from %s:\n%s", image, path, got)
	}
}

func TestDeployResumesACutDownload(t *testing.T) {
	c := newDeployCase(t)
	c.srv.cut["alpha.tar.zst"] = len(c.alpha) / 2
	if _, _, err := c.deploy(t, deployDoc(c.srv.URL, "", "")); err != nil {
		t.Fatalf("a resumable cut failed the deploy: %v", err)
	}
}

func TestDeployImageFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(c *deployCase) string
		want  string
	}{
		{"wrong checksum", func(c *deployCase) string {
			return deployDoc(c.srv.URL, `, "checksum": "sha256:`+strings.Repeat("00", 32)+`"`, "")
		}, "checksum mismatch"},
		{"truncated, no resume", func(c *deployCase) string {
			c.srv.cut["alpha.tar.zst"] = len(c.alpha) / 2
			c.srv.noResume["alpha.tar.zst"] = true
			return deployDoc(c.srv.URL, "", "")
		}, "unexpected EOF"},
		{"missing image", func(c *deployCase) string {
			delete(c.srv.blobs, "alpha.tar.zst")
			return deployDoc(c.srv.URL, "", "")
		}, "404"},
		{"format differs from the spec", func(c *deployCase) string {
			return deployDoc(c.srv.URL, `, "format": "tar.gz"`, "")
		}, "the spec says format tar.gz, the data is tar.zst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newDeployCase(t)
			_, _, err := c.deploy(t, tc.setup(c))
			if !errors.Is(err, deploy.ErrImage) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want an image error containing %q", err, tc.want)
			}
		})
	}
}

// TestDeployRawImage writes a raw ext4 image (made with mke2fs -d) onto a larger
// partition: it gets the planned UUID and label and is grown to the partition.
func TestDeployRawImage(t *testing.T) {
	needLoop(t, "mke2fs", "e2fsck", "tune2fs", "resize2fs", "dumpe2fs")
	c := newDeployCase(t)
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/os-release"), []byte("PRETTY_NAME=\"raw\"\n"), 0o644)
	raw := filepath.Join(t.TempDir(), "root.img")
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-d", tree, raw, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v %s", err, out)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	c.srv.blobs["alpha.tar.zst"] = zstdBytes(t, b) // a raw.zst under the old name: format is sniffed
	l, img, err := c.deploy(t, deployDoc(c.srv.URL, "", ""))
	if err != nil {
		t.Fatal(err)
	}
	root := findFS(l, l.Images[0].RootUUID)
	got := blkidOf(t, img, l.Disks[0])[root.Number]
	if got.UUID != root.FS.UUID || got.Label != root.FS.Label || got.Type != "ext4" {
		t.Errorf("raw root: blkid %+v, plan %s %s", got, root.FS.UUID, root.FS.Label)
	}
	withPartition(t, img, l.Disks[0], root.Number, func(t *testing.T, mnt string) {
		out, err := exec.Command("df", "--output=size", "-B1", mnt).Output()
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(out))
		size, _ := strconv.ParseUint(f[len(f)-1], 10, 64)
		if size < 150<<20 {
			t.Errorf("raw filesystem was not grown: %d bytes on a 200 MiB partition", size)
		}
		if fstab, err := os.ReadFile(filepath.Join(mnt, "etc/fstab")); err != nil || !strings.Contains(string(fstab), "UUID="+root.FS.UUID) {
			t.Errorf("fstab of the raw image: %v\n%s", err, fstab)
		}
	})
}
