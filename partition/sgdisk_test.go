package partition

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
)

// These tests write each planned table with sgdisk (GPT fdisk) onto a sparse file of
// the disk's exact size and check that sgdisk finds nothing wrong with it and reads
// back exactly what was planned. sgdisk is told every sector, GUID and name, and
// "-a 1" so that it aligns nothing itself: any disagreement is the planner's.
//
// There is no 4096-byte-sector case: sgdisk (1.0.9) takes the logical sector size
// from the block device and always uses 512 bytes for a regular file, with no option
// to change it, so a 4Kn table cannot be written to a plain file.

// sgdisk returns the path of sgdisk, skipping the test when it is missing, unless the
// environment says this is CI, where its absence is a broken setup.
func sgdisk(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sgdisk")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sgdisk is not in PATH (Debian package gdisk) and CI=true: %v", err)
		}
		t.Skip("sgdisk is not in PATH; install the gdisk package to cross-check plans")
	}
	return p
}

// sgdiskSpecs are plans beyond the examples: a legacy-bootable "boot" volume (GPT
// attribute bit 2), volumes placed after "remaining" from the end of the disk, a
// percentage, a partition name that only fits GPT once cut to 36 UTF-16 units, and a
// partition GUID given by the document.
var sgdiskSpecs = map[string]string{
	"bareon-fields": bareonFieldsDoc,
	"boot-volume-and-tail": `{
	  "images": [{"name": "os", "url": "u", "target": "/"}],
	  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "3 GiB", "volumes": [
	    {"type": "boot", "mount": "/boot", "file_system": "ext4", "size": "512 MiB"},
	    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"},
	    {"type": "partition", "name": "` + strings.Repeat("\U0001F600", 20) + `", "mount": "/var", "file_system": "xfs", "size": "10%"},
	    {"type": "partition", "mount": "swap", "file_system": "swap", "size": "1 GiB"}]}]}`,
	"odd-disk-size": `{
	  "images": [{"name": "a", "url": "u", "target": "/"}, {"name": "b", "url": "u", "target": "/"}],
	  "partitions": [
	    {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "3000000001 B", "volumes": [
	      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "1000 MB", "images": ["a"]},
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining", "images": ["b"]},
	      {"type": "pv", "vg": "data", "size": "17 MiB", "lvm_meta_size": "1 MiB"}]},
	    {"type": "disk", "id": {"type": "name", "value": "sdb"}, "size": "2 GB", "volumes": [
	      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "1000 MB", "images": ["a"]},
	      {"type": "pv", "vg": "data", "size": "remaining"}]},
	    {"type": "vg", "id": "data", "volumes": [
	      {"type": "lv", "name": "srv", "mount": "/srv", "file_system": "xfs", "size": "remaining", "images": ["a", "b"]}]}]}`,
}

func TestSgdiskCrossCheck(t *testing.T) {
	bin := sgdisk(t)
	docs := map[string]string{}
	files, err := filepath.Glob("../examples/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no ../examples/*.json")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs["examples/"+filepath.Base(f)] = string(b)
	}
	for name, doc := range sgdiskSpecs {
		docs[name] = doc
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// Every disk is simulated from the spec's own size.
			l := mustPlan(t, doc, nil, "sgdisk-"+name)
			for _, d := range l.Disks {
				t.Run(d.ID.Value, func(t *testing.T) {
					t.Parallel()
					crossCheckDisk(t, bin, d)
				})
			}
		})
	}
}

// runSgdisk runs sgdisk and returns its standard output. Its warnings (on standard
// error, some starting with a BEL) are shown only when it fails.
func runSgdisk(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sgdisk %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

var (
	reFirstSector = regexp.MustCompile(`(?m)^First sector: (\d+) `)
	reLastSector  = regexp.MustCompile(`(?m)^Last sector: (\d+) `)
	reTypeCode    = regexp.MustCompile(`^Partition GUID code: ([0-9A-F-]{36})`)
	reUniqueGUID  = regexp.MustCompile(`(?m)^Partition unique GUID: ([0-9A-F-]{36})$`)
	reAttributes  = regexp.MustCompile(`(?m)^Attribute flags: ([0-9a-fA-F]{16})$`)
	reName        = regexp.MustCompile(`(?m)^Partition name: '(.*)'$`)
	reDiskGUID    = regexp.MustCompile(`(?m)^Disk identifier \(GUID\): ([0-9A-F-]{36})$`)
	reUsable      = regexp.MustCompile(`(?m)^First usable sector is (\d+), last usable sector is (\d+)$`)
	reSectors     = regexp.MustCompile(`(?m)^Disk \S+: (\d+) sectors`)
	reSectorSize  = regexp.MustCompile(`(?m)^Sector size \(logical\): (\d+) bytes`)
	rePartRow     = regexp.MustCompile(`(?m)^\s+(\d+)\s+(\d+)\s+(\d+)\s`)
)

func field(t *testing.T, re *regexp.Regexp, out string, group int) string {
	t.Helper()
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no match for %s in sgdisk output:\n%s", re, out)
	}
	return m[group]
}

func crossCheckDisk(t *testing.T, bin string, d *DiskLayout) {
	if d.SectorSize != 512 {
		t.Fatalf("sector size %d: sgdisk writes 512-byte sectors only to files", d.SectorSize)
	}
	img := filepath.Join(t.TempDir(), d.ID.Value+".img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: only the GPT structures are ever written.
	if err := f.Truncate(int64(d.SizeBytes)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	args := []string{"-o", "-a", "1", "-U", d.GUID}
	for _, p := range d.Partitions {
		n := strconv.Itoa(p.Number)
		args = append(args,
			"-n", fmt.Sprintf("%s:%d:%d", n, p.Start, p.End),
			"-t", n+":"+p.Type,
			"-c", n+":"+p.Name,
			"-u", n+":"+p.GUID)
		if p.Attributes&AttrLegacyBoot != 0 {
			args = append(args, "-A", n+":set:2")
		}
	}
	runSgdisk(t, bin, append(args, img)...)

	// One read-only run prints the table (-p), every partition (-i N, in order) and
	// the verification (-v): sgdisk takes a good part of a second per run on a busy
	// machine.
	read := []string{"-p"}
	for _, p := range d.Partitions {
		read = append(read, "-i", strconv.Itoa(p.Number))
	}
	out := runSgdisk(t, bin, append(read, "-v", img)...)
	blocks := strings.Split(out, "Partition GUID code: ")
	if len(blocks) != len(d.Partitions)+1 {
		t.Fatalf("sgdisk printed %d partitions, plan %d:\n%s", len(blocks)-1, len(d.Partitions), out)
	}
	table, verify := blocks[0], blocks[len(blocks)-1]
	if !strings.Contains(verify, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", verify)
	}
	if got := field(t, reSectorSize, table, 1); got != "512" {
		t.Errorf("sgdisk sector size %s", got)
	}
	if got := field(t, reSectors, table, 1); got != strconv.FormatUint(d.Sectors, 10) {
		t.Errorf("sgdisk sees %s sectors, plan %d", got, d.Sectors)
	}
	if got := field(t, reDiskGUID, table, 1); got != d.GUID {
		t.Errorf("disk GUID %s, plan %s", got, d.GUID)
	}
	m := reUsable.FindStringSubmatch(table)
	if m == nil || m[1] != strconv.FormatUint(d.FirstUsable, 10) || m[2] != strconv.FormatUint(d.LastUsable, 10) {
		t.Errorf("sgdisk usable sectors %q, plan %d-%d", m, d.FirstUsable, d.LastUsable)
	}
	if rows := rePartRow.FindAllStringSubmatch(table, -1); len(rows) != len(d.Partitions) {
		t.Errorf("sgdisk -p lists %d partitions, plan %d:\n%s", len(rows), len(d.Partitions), table)
	}

	entries := readGPTEntries(t, img, len(d.Partitions))
	for i, p := range d.Partitions {
		out := "Partition GUID code: " + blocks[i+1]
		if got := field(t, reFirstSector, out, 1); got != strconv.FormatUint(p.Start, 10) {
			t.Errorf("partition %d: first sector %s, plan %d", p.Number, got, p.Start)
		}
		if got := field(t, reLastSector, out, 1); got != strconv.FormatUint(p.End, 10) {
			t.Errorf("partition %d: last sector %s, plan %d", p.Number, got, p.End)
		}
		if got := field(t, reTypeCode, out, 1); got != p.Type {
			t.Errorf("partition %d: type %s, plan %s", p.Number, got, p.Type)
		}
		if got := field(t, reUniqueGUID, out, 1); got != p.GUID {
			t.Errorf("partition %d: GUID %s, plan %s", p.Number, got, p.GUID)
		}
		if got, _ := strconv.ParseUint(field(t, reAttributes, out, 1), 16, 64); got != p.Attributes {
			t.Errorf("partition %d: attributes %#x, plan %#x", p.Number, got, p.Attributes)
		}
		// sgdisk prints each half of a UTF-16 surrogate pair as its own (invalid)
		// character, so its display can be compared only for names in the Basic
		// Multilingual Plane; the raw entry below is compared for every name.
		if got := field(t, reName, out, 1); bmpOnly(p.Name) && got != p.Name {
			t.Errorf("partition %d: name %q, plan %q", p.Number, got, p.Name)
		}

		// The entry as stored on disk, decoded independently of sgdisk.
		e := entries[p.Number-1]
		if e.typ != p.Type || e.guid != p.GUID || e.first != p.Start || e.last != p.End || e.attrs != p.Attributes || e.name != p.Name {
			t.Errorf("partition %d on disk: %+v, plan %s %s %d-%d %#x %q", p.Number, e, p.Type, p.GUID, p.Start, p.End, p.Attributes, p.Name)
		}
	}
}

func bmpOnly(s string) bool {
	for _, r := range s {
		if r > 0xFFFF {
			return false
		}
	}
	return true
}

type gptEntry struct {
	typ, guid   string
	first, last uint64
	attrs       uint64
	name        string
}

// readGPTEntries reads the first n entries of the primary GPT of a 512-byte-sector
// image file.
func readGPTEntries(t *testing.T, img string, n int) []gptEntry {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr := make([]byte, 92)
	if _, err := f.ReadAt(hdr, 512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hdr[:8], []byte("EFI PART")) {
		t.Fatalf("no GPT header at LBA 1: %q", hdr[:8])
	}
	le := binary.LittleEndian
	start, count, size := le.Uint64(hdr[72:]), le.Uint32(hdr[80:]), le.Uint32(hdr[84:])
	if count != 128 || size != 128 {
		t.Fatalf("GPT holds %d entries of %d bytes, want 128 of 128", count, size)
	}
	buf := make([]byte, int(size)*n)
	if _, err := f.ReadAt(buf, int64(start)*512); err != nil {
		t.Fatal(err)
	}
	out := make([]gptEntry, n)
	for i := range out {
		b := buf[i*int(size) : (i+1)*int(size)]
		units := make([]uint16, 36)
		for k := range units {
			units[k] = le.Uint16(b[56+2*k:])
		}
		for len(units) > 0 && units[len(units)-1] == 0 {
			units = units[:len(units)-1]
		}
		out[i] = gptEntry{
			typ: mixedEndianGUID(b[0:16]), guid: mixedEndianGUID(b[16:32]),
			first: le.Uint64(b[32:]), last: le.Uint64(b[40:]), attrs: le.Uint64(b[48:]),
			name: string(utf16.Decode(units)),
		}
	}
	return out
}

// mixedEndianGUID renders a GUID as stored in GPT: the first three fields little-endian.
func mixedEndianGUID(b []byte) string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", le.Uint32(b[0:]), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16])
}
