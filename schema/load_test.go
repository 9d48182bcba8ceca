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

// text replaces the first occurrence of old in the document's JSON text (indented, keys
// sorted, as mutate writes it) with new, after every other op: it writes what a decoded
// tree cannot hold, such as a key twice in one object.
func text(old, new string) op { return op{"text", old, new} }

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
			return nil, fmt.Errorf("value %s: %w", o.arg, err)
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
		if o.kind == "text" {
			continue
		}
		var err error
		if doc, err = applyOp(doc, o); err != nil {
			t.Fatalf("%s %s %s: %v", o.kind, o.ptr, o.arg, err)
		}
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		if o.kind != "text" {
			continue
		}
		if !strings.Contains(string(out), o.ptr) {
			t.Fatalf("text %q is not in the document:\n%s", o.ptr, out)
		}
		out = []byte(strings.Replace(string(out), o.ptr, o.arg, 1))
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
		t.Error("errors.Is(err, ErrInvalid) = false for", err)
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
	ops = append(ops, set("/partitions_policy", `"clean"`), set("/partitions/12/keep_data", `true`))
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
		t.Error("timeout 2.5:", err)
	}
}

// TestExtensionValues accepts every value the README documents for our extensions and
// Bareon's disk id types, and rejects near misses at their pointer.
func TestExtensionValues(t *testing.T) {
	ok := map[string][]op{
		"checksum sha256":   {set("/images/0/checksum", `"sha256:`+strings.Repeat("ab", 32)+`"`)},
		"checksum sha512":   {set("/images/0/checksum", `"sha512:`+strings.Repeat("CD", 64)+`"`)},
		"checksum md5":      {set("/images/0/checksum", `"md5:`+strings.Repeat("0f", 16)+`"`)},
		"checksum file URL": {set("/images/0/checksum", `"https://images.example/SHA256SUMS"`)},
		"checksum file":     {set("/images/0/checksum", `"file:///srv/SHA256SUMS"`)},
		"checksum path":     {set("/images/0/checksum", `"out/images/SHA256SUMS"`)},
		"id path":           {set("/partitions/0/id", `{"type": "path", "value": "disk/by-path/pci-0000:00:1f.2-ata-1"}`)},
		"id scsi":           {set("/partitions/0/id", `{"type": "scsi", "value": "0:0:0:0"}`)},
		"id serial":         {set("/partitions/0/id", `{"type": "serial", "value": "S4EVNF0M123456"}`)},
		"id wwn":            {set("/partitions/0/id", `{"type": "wwn", "value": "0x5002538e40a1b2c3"}`)},
		"id by-id":          {set("/partitions/0/id", `{"type": "by-id", "value": "nvme-Samsung_SSD_980_S4EV"}`)},
		"boot_mode bios":    {set("/boot_mode", `"bios"`)},
		"boot_mode uefi":    {set("/boot_mode", `"uefi"`)},
		"policy verify":     {set("/partitions_policy", `"verify"`)},
		"policy nailgun":    {set("/partitions_policy", `"nailgun_legacy"`)},
		"node_tools true":   {set("/images/0/node_tools", `true`)},
		"node_tools false":  {set("/images/0/node_tools", `false`)},
		"node_tools object": {set("/images/0/node_tools", `{"fleetlock": {"url": "http://10.0.0.1:8080"}}`)},
		"node_tools empty":  {set("/images/0/node_tools", `{}`)},
	}
	for _, f := range []string{"tar", "tar.gz", "tar.xz", "tar.zst", "tar.bz2", "raw", "raw.gz", "raw.xz", "raw.zst", "raw.bz2"} {
		ok["format "+f] = []op{set("/images/0/format", `"`+f+`"`)}
	}
	for name, ops := range ok {
		t.Run(name, func(t *testing.T) {
			if _, _, err := load(t, mutate(t, ops...)); err != nil {
				t.Fatal(err)
			}
		})
	}
	bad := []struct {
		name string
		op   op
		ptr  string
	}{
		{"sha256 too short", set("/images/0/checksum", `"sha256:abcd"`), "/images/0/checksum"},
		{"sha512 with a sha256 digest", set("/images/0/checksum", `"sha512:`+strings.Repeat("ab", 32)+`"`), "/images/0/checksum"},
		{"unknown format", set("/images/0/format", `"qcow2"`), "/images/0/format"},
		{"unknown id type", set("/partitions/0/id", `{"type": "uuid", "value": "x"}`), "/partitions/0/id/type"},
		{"unknown boot mode", set("/boot_mode", `"legacy"`), "/boot_mode"},
		{"node_tools null", set("/images/1/node_tools", `null`), "/images/1/node_tools"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := load(t, mutate(t, tc.op))
			var ve *schema.ValidationError
			if !errors.As(err, &ve) || !slices.ContainsFunc(ve.Problems, func(p schema.Problem) bool { return p.Pointer == tc.ptr }) {
				t.Fatalf("want a problem at %s, got %v", tc.ptr, err)
			}
		})
	}
}
