package schema_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

// brokenSeeds are small documents that reach the loader's error paths.
var brokenSeeds = []string{
	``,
	`null`,
	`[]`,
	`{}`,
	`{"images": [`,
	"{\n  \"images\": [,]\n}",
	`{"images": 5, "partitions": "vda"}`,
	`{"images": [null], "partitions": [null]}`,
	`{"images": [{"name": "a", "url": "u", "target": "/"}], "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [{"type": "partition", "size": true, "mount": "/", "file_system": "ext4"}]}]}`,
	`{"images": [{"name": "a", "url": "u", "target": "/"}], "partitions": [{"type": "disk", "id": "vda", "volumes": [{"type": "lv", "size": "1e3"}]}]}`,
	`{"images": [{"name": "a", "url": "u", "target": "/"}], "partitions": [{"type": "vg", "id": {"type": "name"}, "volumes": 5}]}`,
	`{"images": [{"name": "a", "url": "u", "target": "/"}], "partitions": [{"type": "bogus", "volumes": [[1]]}]}`,
	`{"images": [{"name": "a", "url": "u", "target": "relative"}], "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": 1e400, "volumes": [{"type": "raid", "size": "-0", "mount": "/"}, {"type": "raid", "size": "101%", "mount": "/"}]}]}`,
	`{"images": [{"name": "a", "url": "u", "target": "/", "boot": true}], "partitions": [{"type": "disk", "id": {"type": "path", "value": "/dev/vda"}, "volumes": [{"type": "pv", "vg": "x", "size": 1e3}]}], "multiboot_size": -1, "esp_size": "0%", "grub": {"timeout": 1.0}}`,
	`{"images": [{"name": "a", "na\u006de": "b", "x": {"k": 1, "k": [{"k": 1, "k": 2}]}}], "images": []}`,
	`{"images": [` + strings.Repeat(`{},`, 64) + `{}], "partitions": [{"volumes": [{"images": ["a", "a"]}]}]}`,
	strings.Repeat("[", 17) + strings.Repeat("]", 17),
}

func addCorpus(f *testing.F, pattern string) {
	files, err := filepath.Glob(pattern)
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// FuzzLoad checks that Load never panics, returns exactly one of a spec and an error, and
// locates every finding with a JSON pointer and a message.
func FuzzLoad(f *testing.F) {
	if _, err := os.Stat(bareonDir); err == nil {
		addCorpus(f, filepath.Join(bareonDir, "*.json"))
	}
	addCorpus(f, "../examples/*.json")
	for _, s := range brokenSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(baseDoc))

	f.Fuzz(func(t *testing.T, data []byte) {
		spec, warns, err := schema.Load(bytes.NewReader(data))
		if (spec != nil) == (err != nil) {
			t.Fatalf("Load returned spec %v and error %v: want exactly one", spec != nil, err)
		}
		checkProblems(t, "warning", warns)
		if err == nil {
			return
		}
		if !errors.Is(err, schema.ErrInvalid) {
			t.Fatalf("error does not match ErrInvalid: %v", err)
		}
		var ve *schema.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("error is %T, want *schema.ValidationError: %v", err, err)
		}
		if len(ve.Problems) == 0 {
			t.Fatal("ValidationError without problems")
		}
		checkProblems(t, "error", ve.Problems)
	})
}

func checkProblems(t *testing.T, what string, ps []schema.Problem) {
	t.Helper()
	for _, p := range ps {
		if p.Pointer != "" && !strings.HasPrefix(p.Pointer, "/") {
			t.Errorf("%s pointer %q is neither \"\" nor starts with \"/\" (%q)", what, p.Pointer, p.Message)
		}
		if p.Message == "" {
			t.Errorf("%s at %q has an empty message", what, p.Pointer)
		}
	}
}
