package schema_test

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

// maxDocument is the largest document Load reads.
const maxDocument = 4 << 20

// jsonList is a JSON array of n copies of elem.
func jsonList(n int, elem string) string {
	return "[" + strings.TrimSuffix(strings.Repeat(elem+",", n), ",") + "]"
}

// jsonObject is a JSON object of n distinct keys.
func jsonObject(n int) string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf(`"k%d": %d`, i, i)
	}
	return "{" + strings.Join(keys, ", ") + "}"
}

// fill repeats elem, comma-separated, between prefix and suffix, as often as fits in
// maxDocument bytes.
func fill(prefix, elem, suffix string) []byte {
	n := (maxDocument - len(prefix) - len(suffix) + 1) / (len(elem) + 1)
	return []byte(prefix + strings.TrimSuffix(strings.Repeat(elem+",", n), ",") + suffix)
}

// allocated returns the bytes allocated while f runs. The tests using it do not run in
// parallel with others, so the whole process's count is f's.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// loadCost loads doc, returning its problems and the bytes allocated meanwhile.
func loadCost(t *testing.T, doc []byte) ([]schema.Problem, uint64) {
	t.Helper()
	if len(doc) > maxDocument {
		t.Fatalf("test document is %d bytes, more than Load reads", len(doc))
	}
	var err error
	bytes := allocated(func() { _, _, err = schema.Load(bytes.NewReader(doc)) })
	if err == nil {
		t.Fatal("Load succeeded")
	}
	return problems(t, err), bytes
}

// TestLoadHostileDocuments loads documents of the largest size Load reads, of shapes
// that once cost minutes and gigabytes (4 MiB of "{}," took 57 s and 3.2 GB): each is
// refused at the first bound it exceeds, by a pass over it that costs about what
// reading it does.
func TestLoadHostileDocuments(t *testing.T) {
	const budget = 64 << 20
	half := maxDocument / 2
	tests := []struct {
		name string
		doc  []byte
		want want
	}{
		{"empty images", fill(`{"images": [`, `{}`, `]}`), has("/images", " images; at most 64 are allowed")},
		{"images as strings", fill(`{"images": [`, `"x"`, `]}`), has("/images", " images; at most 64 are allowed")},
		{"disks", fill(`{"partitions": [`, `{"type": "disk"}`, `]}`), has("/partitions", " disks and volume groups; at most 64 are allowed")},
		{"volumes in one disk", fill(`{"partitions": [{"type": "disk", "volumes": [`, `{}`, `]}]}`), has("/partitions/0/volumes", " volumes in this disk or volume group; at most 128 are allowed")},
		{"volumes in many disks", fill(`{"partitions": [`, diskWith("vda", slices.Repeat([]string{`{"type": "partition"}`}, 128)...), `]}`), is("/partitions/8/volumes/0", "volume 1025 of the document: at most 1024 volumes are allowed in all disks and volume groups together")},
		{"image names in a volume", fill(`{"partitions": [{"type": "disk", "volumes": [{"images": [`, `"a"`, `]}]}]}`), has("/partitions/0/volumes/0/images", " image names; at most 64 are allowed")},
		{"nested arrays", []byte(strings.Repeat("[", half) + strings.Repeat("]", half)), is(strings.Repeat("/0", 16), "values nested more than 16 deep; a provision.json nests at most 6 deep")},
		{"nested objects", []byte(strings.Repeat(`{"a":`, (maxDocument-1)/6) + "1" + strings.Repeat("}", (maxDocument-1)/6)), has(strings.Repeat("/a", 16), "values nested more than 16 deep")},
		{"keys in one object", fill(`{"images": [{`, `"k": 1`, `}]}`), is("/images/0", "more than 64 keys in one object; the largest object of a provision.json has 12")},
		{"duplicate keys in one object", fill(`{"images": [{`, `"name": "a"`, `}]}`), is("/images/0", "more than 64 keys in one object; the largest object of a provision.json has 12")},
		{"duplicate keys in many objects", fill(`{"images": [], "bogus": [`, `{"a": 1, "a": 1}`, `]}`), has("", "more than 65536 JSON values (the next one is at /bogus/")},
		{"values of an unknown key", fill(`{"bogus": [`, `0`, `]}`), has("", "more than 65536 JSON values (the next one is at /bogus/65534)")},
		// Every pointer under a key repeats it: 100 duplicate keys under a 2 MiB key.
		{"long key holding duplicates", []byte(`{"images": [], "` + strings.Repeat("k", half) + `": ` + jsonList(200, `{"a": 1, "a": 1}`) + `}`), is("", "a key of 2097152 bytes; keys are at most 256 bytes (the longest of a provision.json has 18)")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, cost := loadCost(t, tt.doc)
			if len(ps) != 1 || !tt.want.match(ps[0]) {
				t.Errorf("want only %s; got:\n%s", tt.want, list(ps[:min(len(ps), 5)]))
			}
			if cost > budget {
				t.Errorf("loading %d bytes allocated %d MiB, want at most %d MiB", len(tt.doc), cost>>20, budget>>20)
			}
		})
	}
}

// TestLoadWorstWithinBounds loads documents within every bound that are as costly to
// check as possible: each is checked in full, in bounded memory, and the answer lists
// at most a hundred problems.
func TestLoadWorstWithinBounds(t *testing.T) {
	const budget = 128 << 20
	// 1024 volumes, every one with bad values and 50 unknown image names, under 64
	// images with 30 KB names: 70,000 findings, each of which could quote all names.
	var volumes []string
	for range 128 {
		volumes = append(volumes, `{"type": "raid", "mount": "/a", "file_system": "ext9", "size": "101%", "name": "md", "label": "long label for ext9", "keep_data": true, "fstab_options": 1, "images": `+jsonList(50, `"q"`)+`}`)
	}
	var images []string
	for i := range 64 {
		images = append(images, fmt.Sprintf(`{"name": "%s%d", "url": "u", "target": "/x", "boot": true, "bogus": 1}`, strings.Repeat("n", 30000), i))
	}
	manyFindings := `{"images": [` + strings.Join(images, ", ") + `], "partitions": ` + jsonList(8, diskWith("vda", volumes...)) + `}`

	// 1024 raid members bound by default to an image with a 2 MiB name, disagreeing on
	// the md name: each message names the array, whose key holds the image's name.
	member := fmt.Sprintf(`{"type": "raid", "mount": "/x", "file_system": "ext4", "size": 1, "name": "%s"}`, strings.Repeat("m", 1000))
	longName := `{"images": [{"name": "` + strings.Repeat("n", 2<<20) + `", "url": "u", "target": "/"}], "partitions": ` + jsonList(8, diskWith("vda", slices.Repeat([]string{member}, 128)...)) + `}`

	// 1000 objects of 64 keys, all the same key.
	manyDuplicates := `{"images": [], "bogus": ` + jsonList(1000, `{`+strings.TrimSuffix(strings.Repeat(`"a": 1,`, 64), ",")+`}`) + `}`

	for name, doc := range map[string]string{"many findings": manyFindings, "long name": longName, "many duplicate keys": manyDuplicates} {
		t.Run(name, func(t *testing.T) {
			ps, cost := loadCost(t, []byte(doc))
			if len(ps) != 101 || !has("", "more errors are not listed (only the first 100 are)").match(ps[100]) {
				t.Errorf("got %d problems ending with %v, want 100 and how many more", len(ps), ps[len(ps)-1])
			}
			if n := len((&schema.ValidationError{Problems: ps}).Error()); n > 256<<10 {
				t.Errorf("the error text is %d bytes, want at most 256 KiB", n)
			}
			if cost > budget {
				t.Errorf("loading %d bytes allocated %d MiB, want at most %d MiB", len(doc), cost>>20, budget>>20)
			}
		})
	}
}

// TestLoadReportsFirstHundred checks the cap on problems: the first hundred in document
// order, then how many more there are, duplicate keys counted past their own cap.
func TestLoadReportsFirstHundred(t *testing.T) {
	dups := `{` + strings.TrimSuffix(strings.Repeat(`"k": 1, `, 51), ", ") + `}`
	doc := mutate(t, set("/images/0/extra", `[]`), text(`"extra": []`, `"extra": [`+dups+`, `+dups+`, `+dups+`]`))
	_, _, err := load(t, doc)
	ps := problems(t, err)
	if len(ps) != 101 {
		t.Fatalf("got %d problems, want 101:\n%s", len(ps), list(ps))
	}
	expect(t, "error", ps, []want{
		is("/images/0/extra", `unknown key "extra"`),
		has("/images/0/extra/0/k", `duplicate key "k"`),
		has("/images/0/extra/1/k", `duplicate key "k"`),
	})
	if want := is("", "51 more errors are not listed (only the first 100 are)"); !want.match(ps[100]) {
		t.Errorf("last problem %q: %q, want %s", ps[100].Pointer, ps[100].Message, want)
	}
	if slices.ContainsFunc(ps, func(p schema.Problem) bool { return strings.HasPrefix(p.Pointer, "/images/0/extra/2/") }) {
		t.Error("a duplicate key of /images/0/extra/2 is reported, but it is not among the first hundred")
	}
}

// TestLoadAtBounds checks that a document at each bound is not refused.
func TestLoadAtBounds(t *testing.T) {
	disk := diskWith("vda", slices.Repeat([]string{`{"type": "partition", "size": 1}`}, 128)...)
	tests := map[string][]op{
		"64 images":                  {set("/images", jsonList(64, utilsImage))},
		"64 disks and vgs":           {set("/partitions", jsonList(64, diskWith("vda")))},
		"128 volumes in a disk":      {set("/partitions/0", disk)},
		"1024 volumes in all":        {set("/partitions", jsonList(8, disk))},
		"64 image names in a volume": {set("/partitions/0/volumes/0/images", jsonList(64, `"centos"`))},
		"values nested 16 deep":      {set("/images/0/extra", strings.Repeat("[", 13)+strings.Repeat("]", 13))},
		"64 keys in an object":       {set("/images/0", jsonObject(64))},
		"a key of 256 bytes":         {set("/images/0/"+strings.Repeat("k", 256), `1`)},
		// baseDoc and the grub object hold 58 values; one more is refused.
		"65536 values in the document": {set("/grub", `{"timeout": `+jsonList(65536-58, "0")+`}`)},
	}
	for name, ops := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := load(t, mutate(t, ops...))
			if err == nil {
				return
			}
			for _, p := range problems(t, err) {
				for _, refusal := range []string{"are allowed", "nested more than", "keys in one object", "keys are at most", "JSON values"} {
					if strings.Contains(p.Message, refusal) {
						t.Errorf("refused: %q: %q", p.Pointer, p.Message)
					}
				}
			}
		})
	}
}

// TestLoadManyImagesValid loads a valid document with as many images as allowed.
func TestLoadManyImagesValid(t *testing.T) {
	var images, volumes []string
	for i := range 64 {
		images = append(images, fmt.Sprintf(`{"name": "os%d", "url": "http://example.com/os%d.tar", "target": "/"}`, i, i))
		volumes = append(volumes, fmt.Sprintf(`{"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["os%d"]}`, i))
	}
	doc := `{"images": [` + strings.Join(images, ", ") + `], "partitions": [` + diskWith("vda", volumes...) + `]}`
	spec, _, err := load(t, []byte(doc))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(spec.Images) != 64 {
		t.Errorf("got %d images, want 64", len(spec.Images))
	}
}
