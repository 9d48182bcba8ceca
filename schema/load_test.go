package schema_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

// baseDoc is a small valid document: two OS images on one disk, and a volume group fed by
// a pv on that disk, so that partitions, pvs and lvs are all reachable by the mutations
// below (boot, raid and lvm_meta_pool volumes are added by the cases that need them).
//
//	/images/0                centos, boot: true
//	/images/1                ubuntu
//	/partitions/0            disk vda
//	/partitions/0/volumes/0  partition "/" (centos)
//	/partitions/0/volumes/1  partition "/" (ubuntu)
//	/partitions/0/volumes/2  pv of "data", remaining
//	/partitions/1            vg "data"
//	/partitions/1/volumes/0  lv home, "/home", xfs, 40% (both images)
//	/partitions/1/volumes/1  lv var, "/var", remaining (no images: the first image)
const baseDoc = `{
  "images": [
    {"name": "centos", "url": "http://example.com/centos.tar.gz", "target": "/", "boot": true},
    {"name": "ubuntu", "image_pull_url": "http://example.com/ubuntu.tar.gz", "target": "/"}
  ],
  "partitions": [
    {
      "type": "disk",
      "id": {"type": "name", "value": "vda"},
      "size": "20 GiB",
      "volumes": [
        {"type": "partition", "mount": "/", "file_system": "ext4", "size": "5 GiB", "images": ["centos"]},
        {"type": "partition", "mount": "/", "file_system": "ext4", "size": "5 GiB", "images": ["ubuntu"]},
        {"type": "pv", "vg": "data", "size": "remaining"}
      ]
    },
    {
      "type": "vg",
      "id": "data",
      "volumes": [
        {"type": "lv", "name": "home", "mount": "/home", "file_system": "xfs", "size": "40%", "images": ["centos", "ubuntu"]},
        {"type": "lv", "name": "var", "mount": "/var", "file_system": "ext4", "size": "remaining"}
      ]
    }
  ]
}`

// op is one edit of a decoded document, addressed by a JSON pointer (JSON Patch style).
type op struct {
	kind     string // "set", "add", "del", "move"
	ptr, arg string // arg: a JSON value, or for "move" the destination pointer
}

// set replaces (or creates) the value at ptr; val is JSON.
func set(ptr, val string) op { return op{"set", ptr, val} }

// add inserts val before the array element at ptr ("-" appends), or sets an object key.
func add(ptr, val string) op { return op{"add", ptr, val} }

// del removes the value at ptr.
func del(ptr string) op { return op{"del", ptr, ""} }

// move removes the value at from and adds it at to.
func move(from, to string) op { return op{"move", from, to} }

func tokens(ptr string) []string {
	if ptr == "" {
		return nil
	}
	toks := strings.Split(ptr[1:], "/")
	for i, t := range toks {
		toks[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(t)
	}
	return toks
}

// edit applies f to the container holding the last token of toks and returns the
// (possibly reallocated) node.
func edit(node any, toks []string, f func(parent any, last string) (any, error)) (any, error) {
	if len(toks) == 1 {
		return f(node, toks[0])
	}
	switch n := node.(type) {
	case map[string]any:
		c, ok := n[toks[0]]
		if !ok {
			return nil, fmt.Errorf("no key %q", toks[0])
		}
		nc, err := edit(c, toks[1:], f)
		if err != nil {
			return nil, err
		}
		n[toks[0]] = nc
		return n, nil
	case []any:
		i, err := strconv.Atoi(toks[0])
		if err != nil || i < 0 || i >= len(n) {
			return nil, fmt.Errorf("no index %q", toks[0])
		}
		nc, err := edit(n[i], toks[1:], f)
		if err != nil {
			return nil, err
		}
		n[i] = nc
		return n, nil
	}
	return nil, fmt.Errorf("cannot descend into %T at %q", node, toks[0])
}

func get(node any, ptr string) (any, error) {
	for _, t := range tokens(ptr) {
		switch n := node.(type) {
		case map[string]any:
			c, ok := n[t]
			if !ok {
				return nil, fmt.Errorf("%s: no key %q", ptr, t)
			}
			node = c
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(n) {
				return nil, fmt.Errorf("%s: no index %q", ptr, t)
			}
			node = n[i]
		default:
			return nil, fmt.Errorf("%s: cannot descend into %T", ptr, node)
		}
	}
	return node, nil
}

func applyOp(doc any, o op) (any, error) {
	if o.kind == "move" {
		v, err := get(doc, o.ptr)
		if err != nil {
			return nil, err
		}
		if doc, err = edit(doc, tokens(o.ptr), remove); err != nil {
			return nil, err
		}
		return edit(doc, tokens(o.arg), insert(v))
	}
	var val any
	if o.kind != "del" {
		var err error
		if val, err = decode(o.arg); err != nil {
			return nil, fmt.Errorf("value %s: %v", o.arg, err)
		}
	}
	switch o.kind {
	case "set":
		return edit(doc, tokens(o.ptr), func(parent any, last string) (any, error) {
			switch p := parent.(type) {
			case map[string]any:
				p[last] = val
				return p, nil
			case []any:
				i, err := strconv.Atoi(last)
				if err != nil || i < 0 || i >= len(p) {
					return nil, fmt.Errorf("no index %q", last)
				}
				p[i] = val
				return p, nil
			}
			return nil, fmt.Errorf("cannot set in %T", parent)
		})
	case "add":
		return edit(doc, tokens(o.ptr), insert(val))
	case "del":
		return edit(doc, tokens(o.ptr), remove)
	}
	return nil, fmt.Errorf("unknown op %q", o.kind)
}

// decode keeps numbers as written (json.Number), so that "1e3" reaches Load as 1e3.
func decode(s string) (any, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data after %s", s)
	}
	return v, nil
}

func insert(val any) func(parent any, last string) (any, error) {
	return func(parent any, last string) (any, error) {
		switch p := parent.(type) {
		case map[string]any:
			p[last] = val
			return p, nil
		case []any:
			if last == "-" {
				return append(p, val), nil
			}
			i, err := strconv.Atoi(last)
			if err != nil || i < 0 || i > len(p) {
				return nil, fmt.Errorf("bad index %q", last)
			}
			return slices.Insert(p, i, val), nil
		}
		return nil, fmt.Errorf("cannot add to %T", parent)
	}
}

func remove(parent any, last string) (any, error) {
	switch p := parent.(type) {
	case map[string]any:
		if _, ok := p[last]; !ok {
			return nil, fmt.Errorf("no key %q", last)
		}
		delete(p, last)
		return p, nil
	case []any:
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i >= len(p) {
			return nil, fmt.Errorf("no index %q", last)
		}
		return slices.Delete(p, i, i+1), nil
	}
	return nil, fmt.Errorf("cannot remove from %T", parent)
}

// mutate returns baseDoc with ops applied, as JSON.
func mutate(t *testing.T, ops ...op) []byte {
	t.Helper()
	doc, err := decode(baseDoc)
	if err != nil {
		t.Fatalf("base document: %v", err)
	}
	for _, o := range ops {
		var err error
		if doc, err = applyOp(doc, o); err != nil {
			t.Fatalf("%s %s %s: %v", o.kind, o.ptr, o.arg, err)
		}
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func load(t *testing.T, doc []byte) (*schema.Spec, []schema.Problem, error) {
	t.Helper()
	spec, warns, err := schema.Load(strings.NewReader(string(doc)))
	if (spec == nil) == (err == nil) {
		t.Fatalf("Load returned spec %v and error %v: want exactly one", spec != nil, err)
	}
	return spec, warns, err
}

// problems returns the problems of a Load error, failing if it is not a validation error.
func problems(t *testing.T, err error) []schema.Problem {
	t.Helper()
	if !errors.Is(err, schema.ErrInvalid) {
		t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
	}
	var ve *schema.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error is %T, want *schema.ValidationError: %v", err, err)
	}
	if len(ve.Problems) == 0 {
		t.Fatalf("ValidationError without problems")
	}
	return ve.Problems
}

// want is an expected problem: its exact pointer and a substring of (or, with exact,
// the whole) message.
type want struct {
	ptr, msg string
	exact    bool
}

func has(ptr, msg string) want { return want{ptr: ptr, msg: msg} }
func is(ptr, msg string) want  { return want{ptr: ptr, msg: msg, exact: true} }

func (w want) match(p schema.Problem) bool {
	if p.Pointer != w.ptr {
		return false
	}
	if w.exact {
		return p.Message == w.msg
	}
	return strings.Contains(p.Message, w.msg)
}

func (w want) String() string {
	if w.exact {
		return fmt.Sprintf("%q: exactly %q", w.ptr, w.msg)
	}
	return fmt.Sprintf("%q: containing %q", w.ptr, w.msg)
}

func list(ps []schema.Problem) string {
	if len(ps) == 0 {
		return "  (none)"
	}
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %q: %q\n", p.Pointer, p.Message)
	}
	return strings.TrimRight(b.String(), "\n")
}

func expect(t *testing.T, what string, got []schema.Problem, wants []want) {
	t.Helper()
	for _, w := range wants {
		if !slices.ContainsFunc(got, w.match) {
			t.Errorf("no %s at %s; got:\n%s", what, w, list(got))
		}
	}
}

const (
	utilsImage  = `{"name": "utils", "url": "http://example.com/utils.tar.gz", "target": "/usr/share/utils"}`
	utilsVolume = `{"type": "partition", "mount": "/usr/share/utils", "file_system": "ext4", "size": "1 GiB", "images": ["centos", "ubuntu", "utils"]}`
)

func diskWith(name string, volumes ...string) string {
	return fmt.Sprintf(`{"type": "disk", "id": {"type": "name", "value": %q}, "volumes": [%s]}`, name, strings.Join(volumes, ", "))
}

func raid(mount, fs string) string {
	return fmt.Sprintf(`{"type": "raid", "mount": %q, "file_system": %q, "size": "1 GiB"}`, mount, fs)
}

func volumeAt(t *testing.T, s *schema.Spec, i, j int) *schema.Volume {
	t.Helper()
	if i >= len(s.Partitions) || j >= len(s.Partitions[i].Volumes) {
		t.Fatalf("no volume /partitions/%d/volumes/%d in the spec", i, j)
	}
	return &s.Partitions[i].Volumes[j]
}

func TestLoadBase(t *testing.T) {
	spec, warns, err := load(t, []byte(baseDoc))
	if err != nil {
		t.Fatalf("base document: %v", err)
	}
	if len(warns) != 0 {
		t.Errorf("base document has warnings:\n%s", list(warns))
	}
	if len(spec.Images) != 2 || len(spec.Partitions) != 2 {
		t.Fatalf("got %d images and %d partitions, want 2 and 2", len(spec.Images), len(spec.Partitions))
	}
	if got := spec.Partitions[0].DiskID; got != (schema.DiskID{Type: "name", Value: "vda"}) {
		t.Errorf("disk id = %+v, want name vda", got)
	}
	if got := spec.Partitions[1].VGName; got != "data" {
		t.Errorf("vg name = %q, want data", got)
	}
	if q := spec.Partitions[0].Size.Q; q.Kind != schema.Absolute || q.Bytes != 20*gib {
		t.Errorf("disk size = %+v, want 20 GiB", q)
	}
	if q := volumeAt(t, spec, 1, 0).Size.Q; q.Kind != schema.Percent || q.Pct != 40 {
		t.Errorf("lv home size = %+v, want 40%%", q)
	}
	if q := volumeAt(t, spec, 0, 2).Size.Q; q.Kind != schema.Remaining {
		t.Errorf("pv size = %+v, want remaining", q)
	}
	if spec.Policy() != schema.PolicyClean || spec.Mode() != schema.BootBoth {
		t.Errorf("defaults: policy %q, boot mode %q; want clean, both", spec.Policy(), spec.Mode())
	}
}

func TestLoadCases(t *testing.T) {
	tests := []struct {
		name  string
		ops   []op
		errs  []want // expected errors; none means Load must succeed
		warns []want // expected warnings
		// check inspects the spec of a document that loads.
		check func(t *testing.T, s *schema.Spec)
	}{
		// Unknown keys are reported at the key itself, with a hint for a typo.
		{
			name: "unknown key at top level",
			ops:  []op{set("/partitons", `[]`)},
			errs: []want{is("/partitons", `unknown key "partitons" (did you mean "partitions"?)`)},
		},
		{
			name: "unknown key in an image",
			ops:  []op{set("/images/1/taget", `"/"`)},
			errs: []want{is("/images/1/taget", `unknown key "taget" (did you mean "target"?)`)},
		},
		{
			name: "unknown key in a disk",
			ops:  []op{set("/partitions/0/sise", `"20 GiB"`)},
			errs: []want{is("/partitions/0/sise", `unknown key "sise" (did you mean "size"?)`)},
		},
		{
			name: "unknown key in a partition volume",
			ops:  []op{set("/partitions/0/volumes/1/file_sytem", `"ext4"`)},
			errs: []want{is("/partitions/0/volumes/1/file_sytem", `unknown key "file_sytem" (did you mean "file_system"?)`)},
		},
		{
			name: "unknown key in an lv",
			ops:  []op{set("/partitions/1/volumes/0/fstab_option", `"noatime"`)},
			errs: []want{is("/partitions/1/volumes/0/fstab_option", `unknown key "fstab_option" (did you mean "fstab_options"?)`)},
		},
		{
			name: "unknown key in a disk id",
			ops:  []op{set("/partitions/0/id/vaule", `"vdb"`)},
			errs: []want{is("/partitions/0/id/vaule", `unknown key "vaule" (did you mean "value"?)`)},
		},
		{
			name: "unknown key in a pv",
			ops:  []op{set("/partitions/0/volumes/2/lvm_meta_sise", `64`)},
			errs: []want{is("/partitions/0/volumes/2/lvm_meta_sise", `unknown key "lvm_meta_sise" (did you mean "lvm_meta_size"?)`)},
		},
		{
			name: "unknown key in a vg",
			ops:  []op{set("/partitions/1/volume", `[]`)},
			errs: []want{has("/partitions/1/volume", `(did you mean "volumes"?)`)},
		},
		{
			name: "known key in the wrong place has no hint",
			ops:  []op{set("/partitions/0/volumes/0/vg", `"data"`)},
			errs: []want{is("/partitions/0/volumes/0/vg", `unknown key "vg"`)},
		},
		{
			name: "typo of a known key in another case",
			ops:  []op{set("/partitions/1/volumes/0/Label", `"home"`)},
			errs: []want{is("/partitions/1/volumes/0/Label", `unknown key "Label" (did you mean "label"?)`)},
		},
		{
			name: "typo reported beside a value of the wrong type",
			ops: []op{
				set("/partitions/0/volumes/1/size", `true`),
				set("/partitions/0/volumes/1/file_sytem", `"ext4"`),
			},
			errs: []want{
				has("/partitions/0/volumes/1/size", "got boolean"),
				is("/partitions/0/volumes/1/file_sytem", `unknown key "file_sytem" (did you mean "file_system"?)`),
			},
		},
		{
			name: "unknown key unlike any known key has no hint",
			ops:  []op{set("/partitions/0/volumes/0/colour", `"blue"`)},
			errs: []want{is("/partitions/0/volumes/0/colour", `unknown key "colour"`)},
		},

		// Images and their bindings.
		{
			name: "volume names an unknown image",
			ops:  []op{set("/partitions/0/volumes/1/images", `["ubuntu", "debian"]`)},
			errs: []want{has("/partitions/0/volumes/1/images/1", `unknown image "debian" (images: centos, ubuntu)`)},
		},
		{
			name: "deployed image with no volume mounted at its target",
			ops:  []op{set("/partitions/0/volumes/1/mount", `"/srv"`)},
			errs: []want{is("/images/1/target", `no volume bound to image "ubuntu" is mounted at "/"`)},
		},
		{
			name: "utility image with no volume mounted at its target",
			ops:  []op{add("/images/-", utilsImage)},
			errs: []want{has("/images/2/target", `no volume bound to image "utils" is mounted at "/usr/share/utils"`)},
		},
		{
			name: "two volumes with the same mount in one image",
			ops:  []op{set("/partitions/1/volumes/1/mount", `"/home"`)},
			errs: []want{has("/partitions/1/volumes/1/mount", `image "centos" already has a volume mounted at "/home" (/partitions/1/volumes/0)`)},
		},
		{
			name: "trailing slash does not hide a duplicate mount",
			ops:  []op{set("/partitions/1/volumes/0/mount", `"/var/"`)},
			errs: []want{has("/partitions/1/volumes/1/mount", `image "centos" already has a volume mounted at "/var"`)},
		},
		{
			name: "mounted volume without file_system",
			ops:  []op{del("/partitions/1/volumes/0/file_system")},
			errs: []want{has("/partitions/1/volumes/0/file_system", `required: the volume is mounted at "/home"`)},
		},
		{
			name: "mount that is not absolute",
			ops:  []op{set("/partitions/1/volumes/0/mount", `"/home/../etc"`)},
			errs: []want{has("/partitions/1/volumes/0/mount", `must be an absolute path without ".."`)},
		},
		{
			name: "two images with boot: true",
			ops:  []op{set("/images/1/boot", `true`)},
			errs: []want{is("/images/1/boot", `more than one image has boot: true (the first is /images/0)`)},
		},
		{
			name: "utility image with boot: true",
			ops: []op{
				add("/images/-", utilsImage),
				set("/images/2/boot", `true`),
				add("/partitions/0/volumes/-", utilsVolume),
			},
			errs: []want{has("/images/2/boot", `deployed at "/usr/share/utils", not "/": only a whole OS can boot`)},
		},
		{
			name: "duplicate image names",
			ops:  []op{set("/images/1/name", `"centos"`)},
			errs: []want{is("/images/1/name", `image name "centos" is already used by /images/0`)},
		},
		{
			name: "url and image_pull_url disagree",
			ops:  []op{set("/images/0/image_pull_url", `"http://example.com/other.tar.gz"`)},
			errs: []want{has("/images/0/url", `and image_pull_url "http://example.com/other.tar.gz" disagree`)},
		},
		{
			name: "neither url nor image_pull_url",
			ops:  []op{del("/images/1/image_pull_url")},
			errs: []want{is("/images/1", `one of the keys "image_pull_url", "url" is required`)},
		},
		{
			name: "image target not absolute",
			ops:  []op{set("/images/1/target", `"/../srv"`)},
			errs: []want{has("/images/1/target", `must be an absolute path without ".."`)},
		},

		// Sizes.
		{
			name: "negative size string",
			ops:  []op{set("/partitions/0/volumes/0/size", `"-5 GiB"`)},
			errs: []want{is("/partitions/0/volumes/0/size", `"-5 GiB" is negative`)},
		},
		{
			name: "negative size number",
			ops:  []op{set("/partitions/1/volumes/0/size", `-5`)},
			errs: []want{is("/partitions/1/volumes/0/size", `minimum: got -5, want 0`)},
		},
		{
			name: "percent over 100",
			ops:  []op{set("/partitions/0/volumes/1/size", `"101%"`)},
			errs: []want{is("/partitions/0/volumes/1/size", `"101%" exceeds 100%`)},
		},
		{
			name: "ambiguous unit",
			ops:  []op{set("/partitions/0/volumes/0/size", `"5G"`)},
			errs: []want{has("/partitions/0/volumes/0/size", `unit "G" is ambiguous, write GiB or GB`)},
		},
		{
			name: "JSON number with an exponent",
			ops:  []op{set("/partitions/0/volumes/0/size", `1e3`)},
			errs: []want{is("/partitions/0/volumes/0/size", `1e3 is not a plain number of MiB`)},
		},
		{
			name: "two remaining in one disk",
			ops:  []op{set("/partitions/0/volumes/0/size", `"remaining"`)},
			errs: []want{is("/partitions/0/volumes/2/size", `a second "remaining" in this disk (the first is /partitions/0/volumes/0/size)`)},
		},
		{
			name: "two remaining in one vg",
			ops:  []op{set("/partitions/1/volumes/0/size", `"Remaining"`)},
			errs: []want{is("/partitions/1/volumes/1/size", `a second "remaining" in this volume group (the first is /partitions/1/volumes/0/size)`)},
		},
		{
			name: "percentages over 100 in one disk",
			ops:  []op{set("/partitions/0/volumes/0/size", `"60%"`), set("/partitions/0/volumes/1/size", `"50%"`)},
			errs: []want{is("/partitions/0/volumes/1/size", `percentages in this disk add up to 110%, more than 100%`)},
		},
		{
			name: "percentages over 100 in one vg",
			ops:  []op{set("/partitions/1/volumes/1/size", `"70%"`)},
			errs: []want{is("/partitions/1/volumes/1/size", `percentages in this volume group add up to 110%, more than 100%`)},
		},
		{
			// Summed in float64 these give 100.00000000000001%.
			name: "percentages adding up to exactly 100 are accepted",
			ops: []op{
				set("/partitions/1/volumes/0/size", `"0.2%"`),
				set("/partitions/1/volumes/1/size", `"83.9%"`),
				add("/partitions/1/volumes/-", `{"type": "lv", "name": "tmp", "mount": "/tmp", "file_system": "ext4", "size": "15.9%"}`),
			},
		},
		{
			name: "disk size that is not absolute",
			ops:  []op{set("/partitions/0/size", `"50%"`)},
			errs: []want{is("/partitions/0/size", `a disk's size must be absolute, not "50%"`)},
		},
		{
			name: "lvm_meta_size that is not absolute",
			ops:  []op{set("/partitions/0/volumes/2/lvm_meta_size", `"remaining"`)},
			errs: []want{is("/partitions/0/volumes/2/lvm_meta_size", `lvm_meta_size must be absolute, not "remaining"`)},
		},

		// LVM.
		{
			name: "pv names a missing vg",
			ops:  []op{set("/partitions/0/volumes/2/vg", `"dtaa"`)},
			errs: []want{is("/partitions/0/volumes/2/vg", `no volume group "dtaa" is declared (declared: data)`)},
		},
		{
			name: "vg without pvs",
			ops:  []op{add("/partitions/-", `{"type": "vg", "id": "spare", "volumes": []}`)},
			errs: []want{has("/partitions/2", `volume group "spare" has no pv`)},
		},
		{
			name: "duplicate vg ids",
			ops:  []op{add("/partitions/-", `{"type": "vg", "id": "data", "volumes": []}`)},
			errs: []want{is("/partitions/2/id", `volume group "data" is already declared at /partitions/1`)},
		},
		{
			name: "duplicate lv names",
			ops:  []op{set("/partitions/1/volumes/1/name", `"home"`)},
			errs: []want{is("/partitions/1/volumes/1/name", `logical volume "home" is already declared at /partitions/1/volumes/0`)},
		},
		{
			name: "lv in a disk's volumes",
			ops: []op{add("/partitions/0/volumes/-",
				`{"type": "lv", "name": "tmp", "mount": "/tmp", "file_system": "ext4", "size": "1 GiB"}`)},
			errs: []want{is("/partitions/0/volumes/3/type", `value must be one of 'partition', 'boot', 'pv', 'raid', 'lvm_meta_pool'`)},
		},
		{
			name: "partition at the top level of partitions",
			ops: []op{add("/partitions/-",
				`{"type": "partition", "mount": "/srv", "file_system": "ext4", "size": "2000"}`)},
			errs: []want{has("/partitions/2", `"partition" is a volume, not a disk or vg`)},
		},
		{
			name: "lv at the top level of partitions",
			ops:  []op{add("/partitions/-", `{"type": "lv", "name": "tmp", "size": "1 GiB"}`)},
			errs: []want{has("/partitions/2", `"lv" is a volume, not a disk or vg`)},
		},
		{
			name: "no disk at all",
			ops:  []op{del("/partitions/0")},
			errs: []want{has("/partitions", `no entry of type "disk"`)},
		},

		// Disks.
		{
			name: "duplicate disk ids",
			ops:  []op{add("/partitions/1", diskWith("vda"))},
			errs: []want{is("/partitions/1/id", `disk vda is already declared at /partitions/0`)},
		},
		{
			name: "duplicate disk ids vda and /dev/vda",
			ops:  []op{add("/partitions/1", diskWith("/dev/vda"))},
			errs: []want{is("/partitions/1/id", `disk /dev/vda is already declared at /partitions/0`)},
		},
		{
			name: "duplicate disk ids name vda and path /dev/vda",
			ops:  []op{add("/partitions/1", `{"type": "disk", "id": {"type": "path", "value": "/dev/vda"}, "volumes": []}`)},
			errs: []want{is("/partitions/1/id", `disk path:/dev/vda is already declared at /partitions/0`)},
		},
		{
			name: "two boot volumes on one disk",
			ops: []op{
				add("/partitions/0/volumes/-", `{"type": "boot", "size": "300 MiB"}`),
				add("/partitions/0/volumes/-", `{"type": "boot", "size": "300 MiB"}`),
			},
			errs: []want{has("/partitions/0/volumes/4/type", `more than one boot volume on this disk (the first is /partitions/0/volumes/3)`)},
		},

		// keep_data needs the verify policy.
		{
			name: "keep_data on an lv with the default clean policy",
			ops:  []op{set("/partitions/1/volumes/0/keep_data", `true`)},
			errs: []want{has("/partitions/1/volumes/0/keep_data", `keep_data cannot apply: partitions_policy "clean"`)},
		},
		{
			name: "keep_data on a partition with an explicit clean policy",
			ops:  []op{set("/partitions_policy", `"clean"`), set("/partitions/0/volumes/1/keep_data", `true`)},
			errs: []want{has("/partitions/0/volumes/1/keep_data", `keep_data cannot apply`)},
		},
		{
			name: "keep_data on a pv with the default clean policy",
			ops:  []op{set("/partitions/0/volumes/2/keep_data", `true`)},
			errs: []want{has("/partitions/0/volumes/2/keep_data", `keep_data cannot apply`)},
		},
		{
			name: "keep_data on a vg with the default clean policy",
			ops:  []op{set("/partitions/1/keep_data", `true`)},
			errs: []want{has("/partitions/1/keep_data", `keep_data cannot apply`)},
		},

		// Labels.
		{
			name: "ext4 label of 17 bytes",
			ops:  []op{set("/partitions/0/volumes/0/label", `"abcdefghijklmnopq"`)},
			errs: []want{is("/partitions/0/volumes/0/label", `label "abcdefghijklmnopq" is 17 bytes; ext4 allows at most 16`)},
		},
		{
			name: "xfs label of 13 bytes",
			ops:  []op{set("/partitions/1/volumes/0/label", `"abcdefghijklm"`)},
			errs: []want{has("/partitions/1/volumes/0/label", `is 13 bytes; xfs allows at most 12`)},
		},
		{
			name: "vfat disk_label of 12 bytes",
			ops: []op{
				set("/partitions/0/volumes/0/file_system", `"vfat"`),
				set("/partitions/0/volumes/0/disk_label", `"ABCDEFGHIJKL"`),
			},
			errs: []want{has("/partitions/0/volumes/0/disk_label", `is 12 bytes; vfat allows at most 11`)},
		},
		{
			name: "label without file_system",
			ops:  []op{add("/partitions/0/volumes/-", `{"type": "partition", "size": "1 GiB", "label": "scratch"}`)},
			errs: []want{is("/partitions/0/volumes/3/label", `a label needs a file_system`)},
		},
		{
			name: "label and disk_label disagree",
			ops:  []op{set("/partitions/0/volumes/0/label", `"one"`), set("/partitions/0/volumes/0/disk_label", `"two"`)},
			errs: []want{has("/partitions/0/volumes/0/label", `label "one" and disk_label "two" disagree`)},
		},
		{
			name: "mkfs_options on swap",
			ops: []op{add("/partitions/0/volumes/-",
				`{"type": "partition", "mount": "swap", "file_system": "swap", "size": "1 GiB", "mkfs_options": "-c"}`)},
			errs: []want{has("/partitions/0/volumes/3/mkfs_options", `need a file_system other than swap`)},
		},

		// RAID.
		{
			name: "raid members disagree on file_system",
			ops: []op{
				add("/partitions/0/volumes/-", raid("/srv", "ext4")),
				add("/partitions/-", diskWith("vdb", raid("/srv", "xfs"))),
			},
			errs: []want{is("/partitions/2/volumes/0/file_system", `raid "/srv (centos)" members disagree: "xfs" here, "ext4" at /partitions/0/volumes/3`)},
		},
		{
			name: "raid with two members on one disk",
			ops: []op{
				add("/partitions/0/volumes/-", raid("/srv", "ext4")),
				add("/partitions/0/volumes/-", raid("/srv", "ext4")),
			},
			errs: []want{has("/partitions/0/volumes/4", `raid "/srv (centos)" has two members on one disk (/partitions/0/volumes/3 and this one)`)},
		},

		// Swap.
		{
			name: "mount swap with an ext4 file_system",
			ops:  []op{add("/partitions/0/volumes/-", `{"type": "partition", "mount": "swap", "file_system": "ext4", "size": "1 GiB"}`)},
			errs: []want{is("/partitions/0/volumes/3/file_system", `mount "swap" needs file_system "swap"`)},
		},
		{
			name: "mount swap without file_system",
			ops:  []op{add("/partitions/0/volumes/-", `{"type": "partition", "mount": "swap", "size": "1 GiB"}`)},
			errs: []want{is("/partitions/0/volumes/3/file_system", `mount "swap" needs file_system "swap"`)},
		},
		{
			name: "swap file_system mounted at a path",
			ops:  []op{add("/partitions/0/volumes/-", `{"type": "partition", "mount": "/swap", "file_system": "swap", "size": "1 GiB"}`)},
			errs: []want{is("/partitions/0/volumes/3/mount", `a swap volume is mounted as "swap" (or "none"), not "/swap"`)},
		},

		// Implicit partitions.
		{
			name: "multiboot_size too small",
			ops:  []op{set("/multiboot_size", `"16 MiB"`)},
			errs: []want{has("/multiboot_size", `"16 MiB" is too small: at least 32 MiB`)},
		},
		{
			name: "multiboot_size number too small",
			ops:  []op{set("/multiboot_size", `16`)},
			errs: []want{has("/multiboot_size", `16 is too small: at least 32 MiB`)},
		},
		{
			name: "multiboot_size not absolute",
			ops:  []op{set("/multiboot_size", `"10%"`)},
			errs: []want{is("/multiboot_size", `must be an absolute size, not "10%"`)},
		},
		{
			name: "esp_size too small",
			ops:  []op{set("/esp_size", `"32 MiB"`)},
			errs: []want{has("/esp_size", `"32 MiB" is too small: at least 33 MiB`)},
		},
		{
			name: "esp_size not absolute",
			ops:  []op{set("/esp_size", `"remaining"`)},
			errs: []want{is("/esp_size", `must be an absolute size, not "remaining"`)},
		},

		// Warnings: the document loads.
		{
			name:  "no image has boot: true",
			ops:   []op{del("/images/0/boot")},
			warns: []want{is("/images", `no image has boot: true; "centos" (/images/0) boots by default`)},
		},
		{
			name:  "lvm_meta_pool",
			ops:   []op{add("/partitions/0/volumes/-", `{"type": "lvm_meta_pool", "size": 64}`)},
			warns: []want{has("/partitions/0/volumes/3", `lvm_meta_pool is ignored`)},
		},
		{
			name:  "legacy disk key extra",
			ops:   []op{set("/partitions/0/extra", `[]`)},
			warns: []want{is("/partitions/0/extra", `legacy Bareon key "extra" is ignored`)},
		},
		{
			name:  "legacy disk key free_space",
			ops:   []op{set("/partitions/0/free_space", `"10000"`)},
			warns: []want{is("/partitions/0/free_space", `legacy Bareon key "free_space" is ignored`)},
		},
		{
			name:  "vg min_size",
			ops:   []op{set("/partitions/1/min_size", `10000`)},
			warns: []want{is("/partitions/1/min_size", `legacy Bareon key "min_size" is ignored`)},
		},
		{
			name:  "vg _allocate_size",
			ops:   []op{set("/partitions/1/_allocate_size", `"min"`)},
			warns: []want{is("/partitions/1/_allocate_size", `legacy Bareon key "_allocate_size" is ignored`)},
		},
		{
			name:  "vg label",
			ops:   []op{set("/partitions/1/label", `"data"`)},
			warns: []want{has("/partitions/1/label", `a volume group has no label`)},
		},
		{
			name:  "image_deploy_flags",
			ops:   []op{set("/image_deploy_flags", `{"rsync_flags": "-a -A -X"}`)},
			warns: []want{has("/image_deploy_flags", `rsync_flags has no effect`)},
		},
		{
			name:  "size 0",
			ops:   []op{set("/partitions/1/volumes/0/size", `0`)},
			warns: []want{is("/partitions/1/volumes/0/size", `size 0: the volume is skipped`)},
		},
		{
			name:  "size \"0 MB\"",
			ops:   []op{set("/partitions/0/volumes/0/size", `"0 MB"`)},
			warns: []want{is("/partitions/0/volumes/0/size", `size "0 MB": the volume is skipped`)},
		},
		{
			name:  "size 0%",
			ops:   []op{set("/partitions/1/volumes/0/size", `"0%"`)},
			warns: []want{is("/partitions/1/volumes/0/size", `size "0%": the volume is skipped`)},
		},
		{
			name:  "esp_size with bios boot mode",
			ops:   []op{set("/boot_mode", `"bios"`), set("/esp_size", `"256 MiB"`)},
			warns: []want{is("/esp_size", `ignored: this spec has no such partition`)},
		},

		// Valid documents.
		{
			name: "mount none without file_system",
			ops:  []op{add("/partitions/0/volumes/-", `{"type": "partition", "size": "1 GiB", "mount": "none"}`)},
			check: func(t *testing.T, s *schema.Spec) {
				if v := volumeAt(t, s, 0, 3); v.Mount != "" || v.MountPoint() != "" {
					t.Errorf("mount %q, MountPoint %q; want both empty", v.Mount, v.MountPoint())
				}
			},
		},
		{
			name: "mount NONE without file_system",
			ops:  []op{add("/partitions/0/volumes/-", `{"type": "partition", "size": "1 GiB", "mount": "NONE"}`)},
		},
		{
			name: "mount None on an lv without file_system",
			ops:  []op{add("/partitions/1/volumes/-", `{"type": "lv", "name": "raw", "size": "1 GiB", "mount": "None"}`)},
		},
		{
			name: "volume without images is bound to the first image",
			check: func(t *testing.T, s *schema.Spec) {
				for _, c := range []struct {
					i, j int
					want []string
				}{
					{0, 0, []string{"centos"}},
					{0, 1, []string{"ubuntu"}},
					{1, 0, []string{"centos", "ubuntu"}},
					{1, 1, []string{"centos"}}, // no "images" key
				} {
					if got := volumeAt(t, s, c.i, c.j).Bound; !slices.Equal(got, c.want) {
						t.Errorf("/partitions/%d/volumes/%d: Bound = %q, want %q", c.i, c.j, got, c.want)
					}
				}
			},
		},
		{
			name: "volume without images is bound to the first image when that is ubuntu",
			ops:  []op{move("/images/1", "/images/0")},
			check: func(t *testing.T, s *schema.Spec) {
				if got := volumeAt(t, s, 1, 1).Bound; !slices.Equal(got, []string{"ubuntu"}) {
					t.Errorf("Bound = %q, want [ubuntu]", got)
				}
			},
		},
		{
			name: "vg declared before the disk holding its pv",
			ops:  []op{move("/partitions/1", "/partitions/0")},
			check: func(t *testing.T, s *schema.Spec) {
				if s.Partitions[0].VGName != "data" || s.Partitions[1].DiskID.Value != "vda" {
					t.Errorf("partitions: %q, %+v; want vg data then disk vda", s.Partitions[0].VGName, s.Partitions[1].DiskID)
				}
			},
		},
		{
			name: "trailing slash in a mount is normalised",
			ops:  []op{set("/partitions/1/volumes/1/mount", `"/var/"`)},
			check: func(t *testing.T, s *schema.Spec) {
				if got := volumeAt(t, s, 1, 1).Mount; got != "/var" {
					t.Errorf("mount = %q, want /var", got)
				}
			},
		},
		{
			name: "keep_data with the verify policy",
			ops: []op{
				set("/partitions_policy", `"verify"`),
				set("/partitions/0/volumes/1/keep_data", `true`),
				set("/partitions/0/volumes/2/keep_data", `true`),
				set("/partitions/1/keep_data", `true`),
				set("/partitions/1/volumes/0/keep_data", `true`),
			},
			check: func(t *testing.T, s *schema.Spec) {
				if s.Policy() != schema.PolicyVerify || !volumeAt(t, s, 1, 0).KeepData {
					t.Errorf("policy %q, keep_data %v; want verify, true", s.Policy(), volumeAt(t, s, 1, 0).KeepData)
				}
			},
		},
		{
			name: "url equal to image_pull_url",
			ops:  []op{set("/images/0/image_pull_url", `"http://example.com/centos.tar.gz"`)},
		},
		{
			name: "ext4 label of 16 bytes",
			ops:  []op{set("/partitions/0/volumes/0/label", `"abcdefghijklmnop"`)},
		},
		{
			name: "raid1 across two disks",
			ops: []op{
				add("/partitions/0/volumes/-", raid("/srv", "ext4")),
				add("/partitions/-", diskWith("vdb", raid("/srv", "ext4"))),
			},
		},
		{
			name: "swap volume",
			ops:  []op{add("/partitions/0/volumes/-", `{"type": "partition", "mount": "swap", "file_system": "swap", "size": "1 GiB"}`)},
			check: func(t *testing.T, s *schema.Spec) {
				if v := volumeAt(t, s, 0, 3); !v.IsSwap() || v.MountPoint() != "swap" {
					t.Errorf("IsSwap %v, MountPoint %q; want true, swap", v.IsSwap(), v.MountPoint())
				}
			},
		},
		{
			name: "utility image on a volume shared by both OSes",
			ops:  []op{add("/images/-", utilsImage), add("/partitions/0/volumes/-", utilsVolume)},
		},
		{
			name: "boot volume",
			ops:  []op{add("/partitions/0/volumes/-", `{"type": "boot", "size": "300 MiB"}`)},
		},
		{
			name: "implicit partition sizes large enough",
			ops:  []op{set("/multiboot_size", `"64 MiB"`), set("/esp_size", `256`)},
			check: func(t *testing.T, s *schema.Spec) {
				if s.MultibootSize.Q.Bytes != 64*mib || s.ESPSize.Q.Bytes != 256*mib {
					t.Errorf("multiboot %+v, esp %+v; want 64 MiB, 256 MiB", s.MultibootSize.Q, s.ESPSize.Q)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := mutate(t, tt.ops...)
			spec, warns, err := load(t, doc)
			if len(tt.errs) > 0 {
				if err == nil {
					t.Fatalf("Load succeeded, want errors:\n%s\nwarnings:\n%s", wantList(tt.errs), list(warns))
				}
				ps := problems(t, err)
				expect(t, "error", ps, tt.errs)
				expect(t, "warning", warns, tt.warns)
				noSpuriousUnknown(t, ps, tt.errs)
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(tt.warns) == 0 && len(warns) != 0 {
				t.Errorf("unexpected warnings:\n%s", list(warns))
			}
			expect(t, "warning", warns, tt.warns)
			if tt.check != nil {
				tt.check(t, spec)
			}
		})
	}
}

// noSpuriousUnknown fails on "unknown key" findings that the case does not expect: a
// failing value must not make its valid siblings look unknown.
func noSpuriousUnknown(t *testing.T, got []schema.Problem, wants []want) {
	t.Helper()
	for _, p := range got {
		if !strings.HasPrefix(p.Message, "unknown key") {
			continue
		}
		if !slices.ContainsFunc(wants, func(w want) bool { return w.match(p) }) {
			t.Errorf("unexpected %q: %q", p.Pointer, p.Message)
		}
	}
}

func wantList(ws []want) string {
	var b []string
	for _, w := range ws {
		b = append(b, "  "+w.String())
	}
	return strings.Join(b, "\n")
}

// TestLoadReportsEveryError checks that independent faults in one document are all
// reported by one call, schema and semantic alike.
func TestLoadReportsEveryError(t *testing.T) {
	doc := mutate(t,
		set("/images/1/boot", `true`),                       // semantic
		set("/images/0/checksum", `"sha1:abc"`),             // schema pattern
		set("/partitions/0/volumes/0/size", `"101%"`),       // size grammar
		set("/partitions/0/volumes/1/file_sytem", `"ext4"`), // unknown key
		set("/partitions/0/volumes/2/vg", `"dtaa"`),         // missing vg
		set("/partitions/1/volumes/1/name", `"home"`),       // duplicate lv
	)
	_, _, err := load(t, doc)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	ps := problems(t, err)
	expect(t, "error", ps, []want{
		has("/images/0/checksum", ""),
		has("/images/1/boot", "more than one image has boot: true"),
		is("/partitions/0/volumes/0/size", `"101%" exceeds 100%`),
		has("/partitions/0/volumes/1/file_sytem", "unknown key"),
		has("/partitions/0/volumes/2/vg", `no volume group "dtaa"`),
		has("/partitions/1", `volume group "data" has no pv`),
		has("/partitions/1/volumes/1/name", `logical volume "home" is already declared`),
	})
	if len(ps) != 7 {
		t.Errorf("got %d problems, want 7:\n%s", len(ps), list(ps))
	}
	// The error text lists them all, one per line.
	if n := strings.Count(err.Error(), "\n"); n != len(ps) {
		t.Errorf("error text has %d lines after the heading, want %d:\n%s", n, len(ps), err)
	}
}

func TestLoadInvalidJSON(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		line string // "line L, column C"
	}{
		{"truncated", "{\n  \"images\": [\n", "line 3, column 1"},
		{"stray comma", "{\n  \"images\": [],\n  \"partitions\": [,]\n}", "line 3, column 18"},
		{"bad literal", `{"images": tru}`, "line 1, column 15"},
		{"trailing data", "{}\n{}", "line 2, column 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, []byte(tt.doc))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			ps := problems(t, err)
			if len(ps) != 1 || ps[0].Pointer != "" {
				t.Fatalf("want one problem at the root, got:\n%s", list(ps))
			}
			if !regexp.MustCompile(`^not valid JSON: line \d+, column \d+: `).MatchString(ps[0].Message) {
				t.Errorf("message %q does not give a line and column", ps[0].Message)
			}
			if !strings.Contains(ps[0].Message, tt.line) {
				t.Errorf("message %q, want %q", ps[0].Message, tt.line)
			}
		})
	}
}

// TestLoadWrongTypeKeepsChecking checks that a value of the wrong JSON type is reported
// and the rest of the document is still checked.
func TestLoadWrongTypeKeepsChecking(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
		errs []want
	}{
		{
			name: "size true and a percent over 100 elsewhere",
			ops: []op{
				set("/partitions/0/volumes/0/size", `true`),
				set("/partitions/1/volumes/0/size", `"101%"`),
			},
			errs: []want{
				has("/partitions/0/volumes/0/size", "got boolean, want number or string"),
				is("/partitions/1/volumes/0/size", `"101%" exceeds 100%`),
			},
		},
		{
			name: "boot as a string and a duplicate lv",
			ops: []op{
				set("/images/1/boot", `"yes"`),
				set("/partitions/1/volumes/1/name", `"home"`),
			},
			errs: []want{
				has("/images/1/boot", "boolean"),
				has("/partitions/1/volumes/1/name", `logical volume "home" is already declared`),
			},
		},
		{
			name: "images as a string and an unknown image elsewhere",
			ops: []op{
				set("/partitions/1/volumes/1/images", `"centos"`),
				set("/partitions/0/volumes/1/images", `["ubuntu", "debian"]`),
			},
			errs: []want{
				has("/partitions/1/volumes/1/images", "array"),
				has("/partitions/0/volumes/1/images/1", `unknown image "debian"`),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, mutate(t, tt.ops...))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			ps := problems(t, err)
			expect(t, "error", ps, tt.errs)
			// The wrong-typed value is reported once, and its siblings not at all.
			noSpuriousUnknown(t, ps, nil)
		})
	}
}

// pointerBefore compares JSON pointers in document order, array indexes as numbers.
func pointerBefore(a, b string) bool {
	at, bt := tokens(a), tokens(b)
	for i := 0; i < len(at) && i < len(bt); i++ {
		if at[i] == bt[i] {
			continue
		}
		ai, ea := strconv.Atoi(at[i])
		bi, eb := strconv.Atoi(bt[i])
		if ea == nil && eb == nil {
			return ai < bi
		}
		return at[i] < bt[i]
	}
	return len(at) < len(bt)
}

func TestLoadProblemsInDocumentOrder(t *testing.T) {
	// Eleven vgs without pvs (/partitions/2 .. /partitions/12) are found by a map walk,
	// in no particular order; errors before and after them must keep their places.
	ops := []op{
		set("/partitions/0/volumes/0/size", `"101%"`),
		set("/images/1/boot", `true`),
	}
	for i := 0; i < 11; i++ {
		ops = append(ops, add("/partitions/-", fmt.Sprintf(`{"type": "vg", "id": "spare%d", "volumes": []}`, i)))
	}
	ops = append(ops, set("/partitions/12/keep_data", `true`))
	_, warns, err := load(t, mutate(t, ops...))
	if err == nil {
		t.Fatal("Load succeeded")
	}
	ps := problems(t, err)
	var got []string
	for _, p := range ps {
		got = append(got, p.Pointer)
	}
	want := []string{"/images/1/boot", "/partitions/0/volumes/0/size"}
	for i := 2; i <= 12; i++ {
		want = append(want, fmt.Sprintf("/partitions/%d", i))
		if i == 12 {
			want = append(want, "/partitions/12/keep_data")
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("pointers in this order:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for _, ps := range [][]schema.Problem{ps, warns} {
		for i := 1; i < len(ps); i++ {
			if pointerBefore(ps[i].Pointer, ps[i-1].Pointer) {
				t.Errorf("%q comes after %q", ps[i].Pointer, ps[i-1].Pointer)
			}
		}
	}
}

func TestLoadOversizedDocument(t *testing.T) {
	doc := `{"images": [], "partitions": [], "pad": "` + strings.Repeat("x", 4<<20) + `"}`
	_, _, err := load(t, []byte(doc))
	if err == nil {
		t.Fatal("Load succeeded")
	}
	expect(t, "error", problems(t, err), []want{has("", "document is larger than")})
}

func TestValidationErrorText(t *testing.T) {
	err := &schema.ValidationError{Problems: []schema.Problem{
		{Pointer: "", Message: "root"},
		{Pointer: "/images/0/name", Message: "bad"},
	}}
	want := "invalid provision.json:\n/: root\n/images/0/name: bad"
	if got := err.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", err), schema.ErrInvalid) {
		t.Error("a wrapped ValidationError does not match ErrInvalid")
	}
}

// JSON Schema's "integer" accepts 5.0, so the Go type must decode it too.
func TestGrubTimeout(t *testing.T) {
	for _, tc := range []struct {
		grub string
		want int
	}{{"", 5}, {`, "grub": {}`, 5}, {`, "grub": {"timeout": 0}`, 0}, {`, "grub": {"timeout": 5.0}`, 5}, {`, "grub": {"timeout": 30}`, 30}} {
		doc := strings.TrimSuffix(strings.TrimSpace(baseDoc), "}") + tc.grub + "}"
		spec, _, err := schema.Load(strings.NewReader(doc))
		if err != nil {
			t.Fatalf("grub %q: %v", tc.grub, err)
		}
		if got := spec.GrubTimeout(); got != tc.want {
			t.Errorf("grub %q: timeout %d, want %d", tc.grub, got, tc.want)
		}
	}
	doc := strings.TrimSuffix(strings.TrimSpace(baseDoc), "}") + `, "grub": {"timeout": 2.5}}`
	if _, _, err := schema.Load(strings.NewReader(doc)); err == nil || !strings.Contains(err.Error(), "/grub/timeout") {
		t.Errorf("timeout 2.5: %v", err)
	}
}
