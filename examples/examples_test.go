package examples

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

var update = flag.Bool("update", false, "rewrite the golden plans in testdata/")

// wantExamples names the layouts the examples must keep covering.
var wantExamples = []string{
	"multiboot-two-images.json", // Bareon's two-image single-disk layout
	"two-disks-shared.json",     // a partition shared by two images across two disks, swap
	"lvm.json",                  // roots on LVM, vg declared before its pv, lvm_meta_size
	"raid1.json",                // md raid1 across two disks, BIOS only
	"utility-image.json",        // a utility image deployed under a sub-path
	"uefi.json",                 // UEFI only, custom ESP and multiboot sizes
	"demo.json",                 // make demo: two bootable test images from local paths
	"single-image-ramdisk.json", // one image keeping the deploy ramdisk: a multiboot partition
}

func TestExamplesPlanLikeGolden(t *testing.T) {
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range files {
		have[f] = true
	}
	for _, w := range wantExamples {
		if !have[w] {
			t.Errorf("example %s is missing", w)
		}
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(f, ".json"), func(t *testing.T) {
			text, js, actions := planExample(t, f)
			base := filepath.Join("testdata", strings.TrimSuffix(f, ".json"))
			compareGolden(t, base+".plan.txt", text)
			compareGolden(t, base+".plan.json", js)
			compareGolden(t, base+".actions.txt", actions)
		})
	}
}

// planExample plans an example and renders the plan as a table and as JSON, and the
// steps the clean policy takes with each disk on /dev/<id>.
func planExample(t *testing.T, file string) (text, js, actions []byte) {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	spec, warns, err := schema.Load(fh)
	if err != nil {
		t.Fatalf("%s does not validate: %v", file, err)
	}
	layout, err := partition.Plan(spec, nil, "golden")
	if err != nil {
		t.Fatalf("%s does not plan: %v", file, err)
	}
	var tb bytes.Buffer
	for _, w := range warns {
		fmt.Fprintf(&tb, "warning: %s\n", w)
	}
	if err := layout.WriteTable(&tb); err != nil {
		t.Fatal(err)
	}
	js, err = json.MarshalIndent(layout, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	devs := partition.Devices{}
	for _, d := range layout.Disks {
		devs[d.ID.Value] = "/dev/" + strings.TrimPrefix(d.ID.Value, "/dev/")
	}
	steps, err := partition.CleanActions(layout, devs)
	if err != nil {
		t.Fatal(err)
	}
	var ab bytes.Buffer
	for i, a := range steps {
		fmt.Fprintf(&ab, "%d. %s\n", i+1, a)
	}
	return tb.Bytes(), append(js, '\n'), ab.Bytes()
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./examples -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("plan differs from %s (run go test ./examples -update if the change is intended):\n%s", path, firstDiff(want, got))
	}
}

// firstDiff shows the first differing line, enough to see what moved.
func firstDiff(want, got []byte) string {
	wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, w, g)
		}
	}
	return "(identical lines, different bytes)"
}
