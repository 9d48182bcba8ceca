package schema_test

import (
	"strings"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

// TestBareonFields loads documents using the fields Bareon documents or its schema
// accepts: each loads (with a warning where the field has no effect here), and the
// values that are wrong are refused in words at their pointers.
func TestBareonFields(t *testing.T) {
	const guid = "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"
	raidNamed := func(name string) string {
		return `{"type": "raid", "mount": "/srv", "file_system": "ext4", "size": "1 GiB", "name": ` + name + `}`
	}
	runLoadCases(t, []loadCase{
		{
			name: "boot as 1 and 0",
			ops:  []op{set("/images/0/boot", `1`), set("/images/1/boot", `0`)},
			check: func(t *testing.T, s *schema.Spec) {
				if !s.Images[0].Boot || s.Images[1].Boot {
					t.Errorf("boot = %v, %v; want true, false", s.Images[0].Boot, s.Images[1].Boot)
				}
			},
		},
		{
			name: "boot as 2",
			ops:  []op{set("/images/0/boot", `2`)},
			errs: []want{has("/images/0/boot", "")},
		},
		{
			name: "file_system in upper case",
			ops:  []op{set("/partitions/0/volumes/0/file_system", `"EXT4"`), set("/partitions/1/volumes/0/file_system", `"Xfs"`)},
			check: func(t *testing.T, s *schema.Spec) {
				if a, b := volumeAt(t, s, 0, 0).FileSystem, volumeAt(t, s, 1, 0).FileSystem; a != "ext4" || b != "xfs" {
					t.Errorf("file_system = %q, %q; want ext4, xfs", a, b)
				}
			},
		},
		{
			name: "file_system unknown",
			ops:  []op{set("/partitions/0/volumes/0/file_system", `"BTRFS"`)},
			errs: []want{is("/partitions/0/volumes/0/file_system", `file_system "btrfs" is not one of ext2, ext3, ext4, xfs, vfat, swap (in any case)`)},
		},
		{
			name: "disk_label on an lv",
			ops:  []op{set("/partitions/1/volumes/0/disk_label", `"home"`)},
			check: func(t *testing.T, s *schema.Spec) {
				if got := volumeAt(t, s, 1, 0).FSLabel(); got != "home" {
					t.Errorf("label = %q, want home", got)
				}
			},
		},
		{
			name: "disk_label on an lv too long for xfs",
			ops:  []op{set("/partitions/1/volumes/0/disk_label", `"thirteen-byte"`)},
			errs: []want{is("/partitions/1/volumes/0/disk_label", `label "thirteen-byte" is 13 bytes; xfs allows at most 12`)},
		},
		{
			name: "extra keys in deploy_data",
			ops:  []op{set("/deploy_data", `{"kernel_params": "console=ttyS0", "image_uuid": "u", "a/b": 1}`)},
			warns: []want{
				is("/deploy_data/a~1b", `deploy_data key "a/b" is ignored: only kernel_params is used`),
				is("/deploy_data/image_uuid", `deploy_data key "image_uuid" is ignored: only kernel_params is used`),
			},
			check: func(t *testing.T, s *schema.Spec) {
				if s.KernelParams() != "console=ttyS0" {
					t.Errorf("kernel_params = %q", s.KernelParams())
				}
			},
		},
		{
			name:  "images on a pv",
			ops:   []op{set("/partitions/0/volumes/2/images", `["centos"]`)},
			warns: []want{has("/partitions/0/volumes/2/images", "images is ignored")},
		},
		{
			name: "partition_guid",
			ops:  []op{set("/partitions/0/volumes/0/partition_guid", `"`+guid+`"`)},
			check: func(t *testing.T, s *schema.Spec) {
				if got := volumeAt(t, s, 0, 0).PartitionGUID; got != strings.ToUpper(guid) {
					t.Errorf("partition_guid = %q, want it in upper case", got)
				}
			},
		},
		{
			name: "partition_guid not a GUID",
			ops:  []op{set("/partitions/0/volumes/0/partition_guid", `"1b2c3d4e5f604a7b8c9d0e1f2a3b4c5d"`)},
			errs: []want{has("/partitions/0/volumes/0/partition_guid", "is not a GUID: 32 hexadecimal digits")},
		},
		{
			name: "partition_guid given twice",
			ops: []op{
				set("/partitions/0/volumes/0/partition_guid", `"`+guid+`"`),
				set("/partitions/0/volumes/1/partition_guid", `"`+strings.ToUpper(guid)+`"`),
			},
			errs: []want{
				has("/partitions/0/volumes/0/partition_guid", "is also given at /partitions/0/volumes/1/partition_guid"),
				has("/partitions/0/volumes/1/partition_guid", "is already given at /partitions/0/volumes/0/partition_guid"),
			},
		},
		{
			name: "partition_guid on an lv",
			ops:  []op{set("/partitions/1/volumes/0/partition_guid", `"`+guid+`"`)},
			errs: []want{has("/partitions/1/volumes/0/partition_guid", "unknown key")},
		},
		{
			name: "raid names mdadm takes",
			ops: []op{
				add("/partitions/0/volumes/-", raidNamed(`"Boot"`)),
				add("/partitions/-", diskWith("vdb", raidNamed(`"Boot"`))),
				add("/partitions/-", diskWith("vdc", strings.Replace(raidNamed(`"/dev/md/data_1.x-y"`), "/srv", "/data", 1))),
				add("/partitions/-", diskWith("vdd", strings.Replace(raidNamed(`"/dev/md/data_1.x-y"`), "/srv", "/data", 1))),
			},
		},
		{
			name: "raid names mdadm refuses",
			ops: []op{
				add("/partitions/0/volumes/-", raidNamed(`"a/b"`)),
				add("/partitions/0/volumes/-", strings.Replace(raidNamed(`"-x"`), "/srv", "/x", 1)),
				add("/partitions/0/volumes/-", strings.Replace(raidNamed(`"`+strings.Repeat("n", 33)+`"`), "/srv", "/y", 1)),
				add("/partitions/0/volumes/-", strings.Replace(raidNamed(`"/dev/md/"`), "/srv", "/z", 1)),
			},
			errs: []want{
				is("/partitions/0/volumes/3/name", `raid name "a/b" cannot name /dev/md/<name>: mdadm takes only ASCII letters, digits, ".", "_" and "-"`),
				is("/partitions/0/volumes/4/name", `raid name "-x" cannot name /dev/md/<name>: it starts with "-", which mdadm refuses`),
				is("/partitions/0/volumes/5/name", `raid name "`+strings.Repeat("n", 33)+`" cannot name /dev/md/<name>: it is longer than the 32 bytes mdadm keeps`),
				is("/partitions/0/volumes/6/name", `raid name "/dev/md/" cannot name /dev/md/<name>: it is empty once the leading /dev/ or /dev/md/ is dropped`),
			},
		},
		{
			name:  "a volume of size 0 at another volume's mount point",
			ops:   []op{add("/partitions/0/volumes/-", `{"type": "partition", "mount": "/", "file_system": "ext4", "size": 0, "images": ["centos"]}`)},
			warns: []want{is("/partitions/0/volumes/3/size", `size 0: the volume is skipped`)},
		},
		{
			name: "keep_data without partitions_policy",
			ops:  []op{set("/partitions/1/volumes/1/keep_data", `true`), set("/partitions/0/volumes/0/keep_data", `true`)},
			warns: []want{is("/partitions/0/volumes/0/keep_data",
				`partitions_policy is absent and keep_data is set: Bareon's default, "verify", applies (the disks must already hold this layout; nothing is wiped)`)},
			check: func(t *testing.T, s *schema.Spec) {
				if s.Policy() != schema.PolicyVerify {
					t.Errorf("policy %q, want verify", s.Policy())
				}
			},
		},
		{
			name:  "keep_data on a vg without partitions_policy",
			ops:   []op{set("/partitions/1/keep_data", `true`)},
			warns: []want{has("/partitions/1/keep_data", `Bareon's default, "verify", applies`)},
		},
	})
}
