package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/timing"
)

// sameDiskSpec puts two utility images, a and b, on one disk, each in its own ext4.
const sameDiskSpec = `{"images": [{"name": "a", "url": %q, "target": "/a"}, {"name": "b", "url": %q, "target": "/b"}],
 "boot_mode": "bios", "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
  {"type": "partition", "mount": "/a", "file_system": "ext4", "size": "1536 MiB", "images": ["a"]},
  {"type": "partition", "mount": "/b", "file_system": "ext4", "size": "1536 MiB", "images": ["b"]}]}]}`

// TestSameDiskTiming measures the images phase of a deploy of two images onto one disk
// (a loop device on a disk-image file), one at a time (--images-per-disk 1) against two
// at a time, for tar.zst and tar.gz images of a few hundred MB of files from /usr served
// over loopback HTTP. Runs alternate between the two settings, so that the machine's
// other load falls on both alike. It only runs when PROVISIONER_BENCH_SAMEDISK is the
// number of runs per setting and format (it writes ~1 GB per run):
//
//	PROVISIONER_BENCH_SAMEDISK=5 go test ./internal/engine -run TestSameDiskTiming -v -timeout 1h
func TestSameDiskTiming(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("PROVISIONER_BENCH_SAMEDISK"))
	if runs < 1 {
		t.Skip("set PROVISIONER_BENCH_SAMEDISK to the number of runs per setting")
	}
	needLoop(t, "mke2fs")
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "provisioner-bench", "samedisk")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tarPath, tarSize := benchTarball(t, filepath.Join(dir, "rootfs.tar"), 300<<20, 100<<20)
	// /a/NAME and /b/NAME serve the same file under two URLs.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, path.Base(r.URL.Path)))
	}))
	t.Cleanup(srv.Close)
	bin := buildProvisioner(t)
	work := t.TempDir()
	for _, format := range []string{"zst", "gz"} {
		compressOnce(t, tarPath, format, tarPath+"."+format)
		name := filepath.Base(tarPath) + "." + format
		spec := filepath.Join(work, "samedisk-"+format+".json")
		if err := os.WriteFile(spec, fmt.Appendf(nil, sameDiskSpec, srv.URL+"/a/"+name, srv.URL+"/b/"+name), 0o644); err != nil {
			t.Fatal(err)
		}
		times := map[int][]time.Duration{}
		for i := range runs {
			for _, n := range []int{1, 2} {
				d := timeImagesPhase(t, bin, spec, filepath.Join(work, "disk.img"), n)
				times[n] = append(times[n], d)
				t.Logf("tar.%s run %d, %d at a time: images phase %.1f s", format, i+1, n, d.Seconds())
			}
		}
		t.Logf("tar.%s, two images of a %d MB tar on one loop device, %d runs each: 1 at a time median %.1f s (%s), 2 at a time median %.1f s (%s)",
			format, tarSize/1e6, runs, timing.Median(times[1]).Seconds(), timing.Seconds(times[1]), timing.Median(times[2]).Seconds(), timing.Seconds(times[2]))
	}
}

// timeImagesPhase deploys spec onto a new disk-image file with --images-per-disk n and
// returns the images phase's duration from the deploy's output.
func timeImagesPhase(t *testing.T, bin, spec, img string, n int) time.Duration {
	t.Helper()
	os.Remove(img)
	defer os.Remove(img)
	cmd := exec.Command(bin, "deploy", spec, "--device", "vda="+img, "--size", "vda=3200MiB", "--seed", "bench",
		"--boot-info", "", "--images-per-disk", strconv.Itoa(n))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("provisioner deploy: %v\n%s%s", err, out, stderr.Bytes())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "images" && f[2] == "s" {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("images line %q: %v", sc.Text(), err)
			}
			return time.Duration(v * float64(time.Second))
		}
	}
	t.Fatalf("no images duration in the deploy's output:\n%s", out)
	return 0
}
