package partition

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden break-downs in testdata/diff/")

// exampleDoc returns an example spec of the repository.
func exampleDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// editDoc returns doc changed by edit, which works on the decoded JSON.
func editDoc(t *testing.T, doc string, edit func(m map[string]any)) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// at walks decoded JSON by object keys and array indexes.
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v
}

// obj returns the JSON object at path.
func obj(v any, path ...any) map[string]any { return at(v, path...).(map[string]any) }

// diskVolumes returns the volumes of the i-th entry of "partitions".
func diskVolumes(m map[string]any, i int) []any { return at(m, "partitions", i, "volumes").([]any) }

// setVolumes replaces the volumes of the i-th entry of "partitions".
func setVolumes(m map[string]any, i int, vols []any) { obj(m, "partitions", i)["volumes"] = vols }

// deployedRecord plans doc with seed as a deploy would and returns its record: each
// image's digest is its spec's checksum when that is a digest.
func deployedRecord(t *testing.T, doc, seed string) *Record {
	t.Helper()
	l := mustPlan(t, doc, nil, seed)
	r := &Record{Version: RecordVersion, Spec: json.RawMessage(doc), Layout: l, Images: map[string]ImageRecord{}}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, im := range l.Images {
		r.Images[im.Name] = ImageRecord{Digest: (&differ{}).newDigest(im), Operation: "deploy", At: at}
	}
	data, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	r, err = DecodeRecord(data) // as the node reads it back
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// currentOf is what a probe of disks holding r's layout finds: the tables, the logical
// volumes, and one boot entry per whole-OS image, the default booted.
func currentOf(r *Record) *Current {
	l := r.Layout
	c := &Current{Disks: map[string]*CurrentDisk{}, LVs: map[string]uint64{}, VGFree: map[string]uint64{}, Default: l.BootImage}
	for _, d := range l.Disks {
		t := &ExistingTable{SectorSize: d.SectorSize, GUID: d.GUID}
		for _, p := range d.Partitions {
			t.Partitions = append(t.Partitions, ExistingPartition{Number: p.Number, Start: p.Start, End: p.End, Type: p.Type, GUID: p.GUID, Name: p.Name})
		}
		c.Disks[d.ID.Value] = &CurrentDisk{SizeBytes: d.SizeBytes, SectorSize: d.SectorSize, Table: t}
	}
	for _, vg := range l.VGs {
		c.VGFree[vg.Name] = vg.FreeExtents * vg.ExtentSize
		for _, lv := range vg.LVs {
			c.LVs[vg.Name+"/"+lv.Name] = lv.SizeBytes
		}
	}
	for _, im := range l.Images {
		if im.Target == "/" {
			c.Entries = append(c.Entries, BootEntry{GrubID: len(c.Entries), Name: im.Name, ImageName: im.ImageName,
				ImageUUID: im.ImageUUID, Digest: r.Images[im.Name].Digest})
		}
	}
	c.Booted = l.BootImage
	return c
}

// diffDocs deploys oldDoc, plans newDoc with the record's seed and diffs them.
func diffDocs(t *testing.T, oldDoc, newDoc string) (*Breakdown, error) {
	t.Helper()
	r := deployedRecord(t, oldDoc, "seed-a")
	next := mustPlan(t, newDoc, nil, r.Layout.Seed)
	return Diff(r, currentOf(r), next, nil)
}

// checkGolden compares got with testdata/diff/name, or rewrites it under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "diff", name)
	if *updateGolden {
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
		t.Fatalf("%v (run go test ./partition -run TestDiffGolden -update to create it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs (run with -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// checkBreakdownGolden checks both renderings of b.
func checkBreakdownGolden(t *testing.T, name string, b *Breakdown) {
	t.Helper()
	var txt, js bytes.Buffer
	if err := b.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, name+".txt", txt.Bytes())
	checkGolden(t, name+".json", js.Bytes())
}

// findVolume returns the break-down's change of the named volume with the action, or
// fails.
func findVolume(t *testing.T, b *Breakdown, name string, action VolumeAction) VolumeChange {
	t.Helper()
	for _, v := range b.Volumes {
		if v.Name == name && v.Action == action {
			return v
		}
	}
	t.Fatalf("no %s volume %s in %+v", action, name, b.Volumes)
	return VolumeChange{}
}

// findImage returns the break-down's change of the named image, or fails.
func findImage(t *testing.T, b *Breakdown, name string) ImageChange {
	t.Helper()
	for _, im := range b.Images {
		if im.Name == name {
			return im
		}
	}
	t.Fatalf("no image %s in %+v", name, b.Images)
	return ImageChange{}
}

// refusalsMention fails unless some refusal of err names volume and contains each of
// the words.
func refusalsMention(t *testing.T, err error, volume string, words ...string) {
	t.Helper()
	var re *RefusedError
	if !errors.As(err, &re) || !errors.Is(err, ErrRefused) {
		t.Fatalf("error %v is not a *RefusedError", err)
	}
	for _, p := range re.Problems {
		if p.Volume != volume {
			continue
		}
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(p.Reason, w)
		}
		if ok {
			return
		}
	}
	t.Errorf("no refusal of %s mentioning %q in:\n%v", volume, words, err)
}

// stringList makes a JSON array of strings.
func stringList(s ...string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

// withThirdImage adds image debian to multiboot-two-images, on a new 2 GiB partition at
// the end of the disk, sharing the swap.
func withThirdImage(m map[string]any) {
	m["images"] = append(m["images"].([]any), map[string]any{"name": "debian", "url": "http://images.example/debian-12.4.tar.zst",
		"target": "/", "image_name": "Debian 12.4", "checksum": "sha256:" + strings.Repeat("ab", 32)})
	vols := diskVolumes(m, 0)
	obj(vols[2])["images"] = stringList("centos", "ubuntu", "debian")
	setVolumes(m, 0, append(vols, map[string]any{"type": "partition", "mount": "/", "file_system": "ext4", "size": "2 GiB", "images": stringList("debian")}))
}
