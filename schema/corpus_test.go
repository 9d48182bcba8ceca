package schema_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

// bareonDir holds Bareon's own example documents. In CI the repository is cloned with
// shared/ beside it.
const bareonDir = "../../shared/bareon-examples"

// bareonCorpus returns the corpus directory, skipping the test when it is absent (and
// failing instead in CI, where it must be present).
func bareonCorpus(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(bareonDir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Bareon corpus %s is missing in CI: %v", bareonDir, err)
		}
		t.Skipf("Bareon corpus %s not found (clone shared/ beside the repository to run this test): %v", bareonDir, err)
	}
	return bareonDir
}

func readCorpus(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(bareonCorpus(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestBareonCorpusValid(t *testing.T) {
	tests := []struct {
		file  string
		warns []string // every warning's pointer, in order
	}{
		// Neither document sets boot: true, hence the warning at /images.
		{"multiboot-two-images.json", []string{"/images"}},
		{"ironic-user-guide-multiboot.json", []string{"/images", "/partitions/0/extra", "/partitions/0/free_space"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			spec, warns, err := load(t, readCorpus(t, tt.file))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			var got []string
			for _, w := range warns {
				got = append(got, w.Pointer)
			}
			if !slices.Equal(got, tt.warns) {
				t.Errorf("warnings at %q, want %q; all warnings:\n%s", got, tt.warns, list(warns))
			}
			// Both put each image's "/" on its own partition of vda.
			for j, want := range []string{"centos", "ubuntu"} {
				if b := volumeAt(t, spec, 0, j).Bound; !slices.Equal(b, []string{want}) {
					t.Errorf("/partitions/0/volumes/%d is bound to %q, want [%s]", j, b, want)
				}
			}
		})
	}
}

func TestBareonCorpusUtilityImageInvalid(t *testing.T) {
	spec, _, err := load(t, readCorpus(t, "multiboot-utility-image-invalid.json"))
	if err == nil {
		t.Fatalf("Load accepted Bareon's invalid utility-image example: %+v", spec)
	}
	ps := problems(t, err)
	if !slices.ContainsFunc(ps, func(p schema.Problem) bool { return p.Pointer == "/partitions/1" }) {
		t.Errorf("no problem at /partitions/1; got:\n%s", list(ps))
	}
}

func TestBareonCorpusFragments(t *testing.T) {
	dir := bareonCorpus(t)
	files, err := filepath.Glob(filepath.Join(dir, "fragment-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no fragment-*.json in %s", dir)
	}
	const images = `[{"name": "centos", "url": "http://example.com/centos.tar.gz", "target": "/"}]`
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]json.RawMessage
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatalf("fragment: %v", err)
			}
			if _, ok := doc["images"]; ok {
				t.Fatalf("fragment already has images")
			}
			doc["images"] = json.RawMessage(images)
			merged, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			spec, warns, err := load(t, merged)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			for _, w := range warns {
				if w.Pointer != "/images" {
					t.Errorf("unexpected warning %q: %q", w.Pointer, w.Message)
				}
			}
			// Volumes without "images" belong to the first (only) image.
			for i := range spec.Partitions {
				for j, v := range spec.Partitions[i].Volumes {
					if v.MountPoint() != "" && !slices.Equal(v.Bound, []string{"centos"}) {
						t.Errorf("/partitions/%d/volumes/%d is bound to %q, want [centos]", i, j, v.Bound)
					}
				}
			}
		})
	}
}

// TestExamples loads the project's own examples, which must all be valid.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skip("no ../examples/*.json")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := schema.Load(bytes.NewReader(data)); err != nil {
				t.Error("Load:", err)
			}
		})
	}
}
