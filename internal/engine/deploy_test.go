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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/disk"
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
	// A kernel (not a real one: nothing boots it here) so that the bootloader step finds one.
	add(&tar.Header{Name: "boot/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "boot/vmlinuz-6.1.0-9-" + marker, Typeflag: tar.TypeReg, Mode: 0o644}, "kernel "+marker)
	add(&tar.Header{Name: "boot/initrd.img-6.1.0-9-" + marker, Typeflag: tar.TypeReg, Mode: 0o644}, "initrd "+marker)
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
// that many body bytes of the first request (after the first whole[name] requests, which
// are served in full); noResume makes every later request fail.
type imageServer struct {
	*httptest.Server
	blobs    map[string][]byte
	cut      map[string]int
	whole    map[string]int
	noResume map[string]bool
	requests atomic.Int32
}

func newImageServer(t *testing.T) *imageServer {
	s := &imageServer{blobs: map[string][]byte{}, cut: map[string]int{}, whole: map[string]int{}, noResume: map[string]bool{}}
	first := map[string]bool{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		name := strings.TrimPrefix(r.URL.Path, "/")
		blob, ok := s.blobs[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if s.whole[name] > 0 {
			s.whole[name]--
			http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(blob))
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
	needLoop(t, "mke2fs", "mkfs.xfs", "mkswap", "grub-install", "udevadm")
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
	res, img, err := c.deployWith(t, doc, func(*DeployOptions) {})
	if res == nil {
		return nil, img, err
	}
	return res.Layout, img, err
}

// deployWith deploys doc onto a fresh 1 GiB image file; edit adjusts the options.
func (c *deployCase) deployWith(t *testing.T, doc string, edit func(*DeployOptions)) (*DeployResult, string, error) {
	t.Helper()
	spec := loadString(t, doc)
	img := filepath.Join(c.dir, "vda.img")
	os.Remove(img)
	opts := DeployOptions{
		PartitionOptions: PartitionOptions{
			Targets: []Target{{Name: "vda", Path: img}}, Sizes: map[string]uint64{"vda": 1 << 30},
			Seed: "deploy", Env: HostEnv(nil),
		},
		Fetcher: &deploy.Fetcher{Backoff: func(int) time.Duration { return time.Millisecond }},
		TmpDir:  c.tmp,
		Boot:    BootOptions{Prober: ProberBuiltin, BootInfoPath: filepath.Join(c.dir, "boot-info.json")},
	}
	edit(&opts)
	res, err := Deploy(context.Background(), spec, opts)
	if m := mountedUnder(t, c.tmp); len(m) > 0 {
		t.Errorf("still mounted after deploy: %v", m)
	}
	noLoopFor(t, img)
	return res, img, err
}

func TestDeployImages(t *testing.T) {
	c := newDeployCase(t)
	sum := fmt.Sprintf(`, "checksum": "sha256:%x"`, sha256.Sum256(c.alpha))
	var mu sync.Mutex
	var phases []string
	final := map[string]int64{}
	res, img, err := c.deployWith(t, deployDoc(c.srv.URL, sum, ""), func(o *DeployOptions) {
		o.Events = func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			if e.Image != "" {
				final[e.Image] = e.Done
				return
			}
			if e.Phase != "" {
				phases = append(phases, e.Phase)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(phases, " ") != "plan partition images bootloader" || final["alpha"] != int64(len(c.alpha)) || len(final) != 3 {
		t.Errorf("events: phases %v, last progress per image %v (alpha is %d bytes)", phases, final, len(c.alpha))
	}
	checkDurations(t, res.Durations, []string{"alpha", "beta", "tools"})
	l := res.Layout
	d := l.Disks[0]
	checkBootFiles(t, c, res, img)
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

// checkDurations checks a successful deploy's durations: every phase and image timed,
// the phases within the total, the bootloader's steps within its phase.
func checkDurations(t *testing.T, d *Durations, images []string) {
	t.Helper()
	if d == nil || d.Bootloader == nil {
		t.Fatalf("durations: %+v", d)
	}
	if d.PlanMS+d.PartitionMS+d.ImagesMS+d.BootloaderMS > d.TotalMS || d.PartitionMS <= 0 || d.ImagesMS <= 0 || d.BootloaderMS <= 0 {
		t.Errorf("phases %+v do not add up within the total", d)
	}
	for _, im := range images {
		if v, ok := d.PerImageMS[im]; !ok || v > d.ImagesMS {
			t.Errorf("image %s: %d ms of the images' %d", im, v, d.ImagesMS)
		}
	}
	b := d.Bootloader
	if b.GrubInstallMS <= 0 || b.GrubInstallMS > d.BootloaderMS || b.KernelDiscoveryMS > d.BootloaderMS || b.CommitMS > d.BootloaderMS {
		t.Errorf("bootloader steps %+v within %d ms", b, d.BootloaderMS)
	}
	t.Logf("durations:\n%s", strings.Join(d.Lines(), "\n"))
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
	golden(t, "fstab-"+image+".golden", got)
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
		{"a whole zstd frame of a tar cut between entries", func(c *deployCase) string {
			whole := rootfsTar(t, "alpha")
			c.srv.blobs["alpha.tar.zst"] = zstdBytes(t, whole[:len(whole)-1024]) // archive/tar's marker is the last 1024 bytes
			return deployDoc(c.srv.URL, "", "")
		}, "without its end-of-archive marker"},
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
	os.MkdirAll(filepath.Join(tree, "boot"), 0o755)
	os.WriteFile(filepath.Join(tree, "boot/vmlinuz-6.1.0-9-raw"), []byte("kernel"), 0o644)
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

// checkDeployRecord checks the deploy's history record on the multiboot partition mounted
// at mnt: the spec's digest is the plan record's, and each image of bi is listed.
func checkDeployRecord(t *testing.T, mnt string, bi *bootloader.BootInfo) {
	t.Helper()
	log, err := bootloader.ReadHistory(mnt)
	if err != nil || len(log.Entries) != 1 {
		t.Fatalf("history: %v %+v", err, log)
	}
	rec, err := bootloader.ReadRecord(mnt)
	if err != nil {
		t.Fatal(err)
	}
	e := log.Entries[0]
	if e.SpecDigest == "" || e.SpecDigest != bootloader.SpecDigest(rec.Spec) || e.Node != bootloader.NodeName() || len(e.Images) != len(bi.Elements) {
		t.Errorf("deploy record %+v, want spec digest %s", e, bootloader.SpecDigest(rec.Spec))
	}
	for i, c := range e.Images {
		el := bi.Elements[i]
		if c.Name != el.OSID || c.From != nil || c.To == nil || c.To.ImageName != el.ImageName || c.To.Digest != el.Digest {
			t.Errorf("deploy record image %d: %+v, element %+v", i, c, el)
		}
	}
}

// checkBootFiles checks what the bootloader step left on the multiboot partition of the
// two-image deployDoc: grub.cfg (golden), grubenv (read by grub-editenv), boot-info.json
// (the same bytes as the --boot-info copy), the history line, grub's BIOS files, and boot
// code in the MBR.
func checkBootFiles(t *testing.T, c *deployCase, res *DeployResult, img string) {
	t.Helper()
	l, bi := res.Layout, res.BootInfo
	if bi == nil || len(bi.Elements) != 2 {
		t.Fatalf("boot info: %+v", bi)
	}
	if bi.CurrentElement != 0 || bi.MultibootPartition != l.Multiboot.UUID || bi.GrubDir != "boot/grub" {
		t.Errorf("boot info: current %d, multiboot %q (plan %s), grub dir %q", bi.CurrentElement, bi.MultibootPartition, l.Multiboot.UUID, bi.GrubDir)
	}
	for i, name := range []string{"alpha", "beta"} {
		e := bi.Elements[i]
		im := l.Images[i]
		if e.GrubID != i || e.OSID != name || e.RootUUID != im.RootUUID || e.MenuentryID != "provisioner-"+name ||
			e.Kernel != "/boot/vmlinuz-6.1.0-9-"+name || e.Initrd != "/boot/initrd.img-6.1.0-9-"+name ||
			e.BootName != name+" ("+name+")" || e.Filesystems["/"] != im.RootUUID || e.Filesystems["/srv/shared"] == "" {
			t.Errorf("element %d: %+v", i, e)
		}
	}
	copyData, err := os.ReadFile(filepath.Join(c.dir, "boot-info.json"))
	if err != nil {
		t.Fatal(err)
	}
	var mb *partition.Partition
	for _, p := range l.Disks[0].Partitions {
		if p.Role == partition.RoleMultiboot {
			mb = p
		}
	}
	withPartition(t, img, l.Disks[0], mb.Number, func(t *testing.T, mnt string) {
		onDisk, err := os.ReadFile(filepath.Join(mnt, "boot-info.json"))
		if err != nil || !bytes.Equal(onDisk, copyData) {
			t.Errorf("boot-info.json on the multiboot partition differs from the --boot-info copy (%v)", err)
		}
		cfg, err := os.ReadFile(filepath.Join(mnt, "boot/grub/grub.cfg"))
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "grub-deploy.cfg", cfg)
		out, err := exec.Command("grub-editenv", filepath.Join(mnt, "boot/grub/grubenv"), "list").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "saved_entry=provisioner-alpha" {
			t.Errorf("grubenv: %v\n%s", err, out)
		}
		for _, f := range []string{"boot/grub/i386-pc/core.img", "boot/grub/i386-pc/normal.mod"} {
			if _, err := os.Stat(filepath.Join(mnt, f)); err != nil {
				t.Error(err)
			}
		}
		hist, err := os.ReadFile(filepath.Join(mnt, "history.jsonl"))
		if err != nil || strings.Count(string(hist), "\n") != 1 || !strings.Contains(string(hist), `"operation":"deploy","to":"alpha","result":"ok"`) {
			t.Errorf("history: %v\n%s", err, hist)
		}
		checkDeployRecord(t, mnt, bi)
	})
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbr := make([]byte, 440)
	if _, err := f.ReadAt(mbr, 0); err != nil || bytes.Equal(mbr, make([]byte, 440)) {
		t.Errorf("no boot code in the MBR (%v)", err)
	}
}

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
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
		t.Errorf("%s differs from %s:\n%s", name, path, got)
	}
}

// TestDeployFailureWipesTables: a clean deploy that fails after partitioning leaves a
// disk without partition tables (PMBR, primary and backup GPT zeroed), unless
// --preserve-on-error.
func TestDeployFailureWipesTables(t *testing.T) {
	for _, preserve := range []bool{false, true} {
		t.Run(fmt.Sprintf("preserve=%v", preserve), func(t *testing.T) {
			c := newDeployCase(t)
			doc := deployDoc(c.srv.URL, `, "checksum": "sha256:`+strings.Repeat("00", 32)+`"`, "")
			_, img, err := c.deployWith(t, doc, func(o *DeployOptions) { o.PreserveOnError = preserve })
			if !errors.Is(err, deploy.ErrImage) {
				t.Fatalf("err = %v, want an image error", err)
			}
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			head := make([]byte, 34*512)
			tail := make([]byte, 33*512)
			f.ReadAt(head, 0)
			f.ReadAt(tail, (1<<30)-int64(len(tail)))
			zero := bytes.Equal(head, make([]byte, len(head))) && bytes.Equal(tail, make([]byte, len(tail)))
			if zero == preserve {
				t.Errorf("tables zeroed = %v with preserve-on-error = %v", zero, preserve)
			}
			if _, err := os.Stat(filepath.Join(c.dir, "boot-info.json")); !os.IsNotExist(err) {
				t.Errorf("a failed deploy wrote boot-info.json (%v)", err)
			}
		})
	}
}

// TestDeploySingleImageSeparateBoot: with one OS image there is no multiboot partition:
// grub's directory and boot-info.json go to the image's /boot volume (grub_dir "grub",
// prefix /grub), for BIOS and UEFI; OpenBootDir finds them offline in the image file, and
// a switch works there the same.
func TestDeploySingleImageSeparateBoot(t *testing.T) {
	needLoop(t, "mkfs.vfat", "mmd", "mcopy", "mdir", "grub-mkimage")
	c := newDeployCase(t)
	doc := fmt.Sprintf(`{
  "images": [{"name": "solo", "url": "%s/alpha.tar.zst", "target": "/", "boot": true}],
  "deploy_data": {"kernel_params": "console=ttyS0 quiet"},
  "grub": {"timeout": 0},
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "1 GiB", "volumes": [
    {"type": "partition", "mount": "/boot", "file_system": "ext4", "size": "100 MiB", "images": ["solo"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "300 MiB", "images": ["solo"]}]}]
}`, c.srv.URL)
	res, img, err := c.deployWith(t, doc, func(*DeployOptions) {})
	if err != nil {
		t.Fatal(err)
	}
	l, bi := res.Layout, res.BootInfo
	boot := findMount(l, "/boot")
	if l.Multiboot != nil || bi == nil || bi.GrubDir != "grub" || bi.MultibootPartition != "" || len(bi.Elements) != 1 {
		t.Fatalf("boot info: %+v", bi)
	}
	e := bi.Elements[0]
	if e.Kernel != "/boot/vmlinuz-6.1.0-9-alpha" || e.Cmdline != "root=UUID="+l.Images[0].RootUUID+" ro console=ttyS0 quiet" || e.Filesystems["/boot"] != boot.FS.UUID {
		t.Errorf("element: %+v", e)
	}
	withPartition(t, img, l.Disks[0], boot.Number, func(t *testing.T, mnt string) {
		cfg, err := os.ReadFile(filepath.Join(mnt, "grub/grub.cfg"))
		if err != nil {
			t.Fatal(err)
		}
		// The kernel is on the /boot volume, so its path there has no /boot prefix.
		for _, want := range []string{"search --no-floppy --fs-uuid --set=root " + boot.FS.UUID, "\tlinux /vmlinuz-6.1.0-9-alpha root=UUID=", "set timeout=0"} {
			if !strings.Contains(string(cfg), want) {
				t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
			}
		}
		for _, f := range []string{"boot-info.json", "history.jsonl", "grub/grubenv", "grub/i386-pc/core.img", "grub/x86_64-efi/normal.mod"} {
			if _, err := os.Stat(filepath.Join(mnt, f)); err != nil {
				t.Error(err)
			}
		}
	})
	// The ESP holds BOOTX64.EFI whose early config searches the /boot volume.
	var esp *partition.Partition
	for _, p := range l.Disks[0].Partitions {
		if p.Role == partition.RoleESP {
			esp = p
		}
	}
	t.Run("esp", func(t *testing.T) {
		dev := attachPlanned(t, img, l.Disks[0])
		efi := filepath.Join(t.TempDir(), "BOOTX64.EFI")
		out, err := exec.Command("mcopy", "-i", disk.PartitionPath(dev, esp.Number), "::/EFI/BOOT/BOOTX64.EFI", efi).CombinedOutput()
		if err != nil {
			t.Fatalf("mcopy: %v %s", err, out)
		}
		data, _ := os.ReadFile(efi)
		if !bytes.Contains(data, []byte("search.fs_uuid "+boot.FS.UUID+" root\nset prefix=($root)/grub\n")) {
			t.Error("BOOTX64.EFI does not search the /boot volume for /grub")
		}
	})

	// Offline, by the image file: found on the /boot partition.
	ctx := context.Background()
	bd, err := OpenBootDir(ctx, BootDirOptions{Device: img, Writable: true, Env: HostEnv(nil), TmpDir: c.tmp})
	if err != nil {
		t.Fatal(err)
	}
	st, err := bootloader.List(bd.Path, "")
	if err != nil || st.Default != 0 || st.Mismatch != "" || !strings.Contains(bd.Source, fmt.Sprintf("partition %d", boot.Number)) {
		t.Errorf("list: %+v %v (source %s)", st, err, bd.Source)
	}
	if _, err := bootloader.SwitchDefault(ctx, bd.Path, bootloader.SwitchOptions{Entry: "solo", Once: true}); err != nil {
		t.Error(err)
	}
	if err := bd.Close(ctx); err != nil {
		t.Fatal(err)
	}
	noLoopFor(t, img)
	if m := mountedUnder(t, c.tmp); len(m) > 0 {
		t.Errorf("still mounted: %v", m)
	}
	withPartition(t, img, l.Disks[0], boot.Number, func(t *testing.T, mnt string) {
		out, err := exec.Command("grub-editenv", filepath.Join(mnt, "grub/grubenv"), "list").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "next_entry=provisioner-solo") {
			t.Errorf("grubenv after switch --once: %v\n%s", err, out)
		}
	})
}
