package schema_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

// loadCase is one document derived from the base by ops, and what Load must say of it.
type loadCase struct {
	name  string
	ops   []op
	errs  []want // expected errors; none means Load must succeed
	warns []want // expected warnings
	// check inspects the spec of a document that loads.
	check func(t *testing.T, s *schema.Spec)
}

func TestLoadCases(t *testing.T) {
	runLoadCases(t, []loadCase{
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
			name: "keep_data on an lv with an explicit clean policy",
			ops:  []op{set("/partitions_policy", `"clean"`), set("/partitions/1/volumes/0/keep_data", `true`)},
			errs: []want{has("/partitions/1/volumes/0/keep_data", `keep_data cannot apply: partitions_policy "clean"`)},
		},
		{
			name: "keep_data on a partition with an explicit clean policy",
			ops:  []op{set("/partitions_policy", `"clean"`), set("/partitions/0/volumes/1/keep_data", `true`)},
			errs: []want{has("/partitions/0/volumes/1/keep_data", `keep_data cannot apply`)},
		},
		{
			name: "keep_data on a pv with an explicit clean policy",
			ops:  []op{set("/partitions_policy", `"clean"`), set("/partitions/0/volumes/2/keep_data", `true`)},
			errs: []want{has("/partitions/0/volumes/2/keep_data", `keep_data cannot apply`)},
		},
		{
			name: "keep_data on a vg with an explicit clean policy",
			ops:  []op{set("/partitions_policy", `"clean"`), set("/partitions/1/keep_data", `true`)},
			errs: []want{has("/partitions/1/keep_data", `keep_data cannot apply`)},
		},

		// node_tools, our extension: a boolean or an object of settings, and only for a
		// whole OS.
		{
			name: "node_tools that is a string",
			ops:  []op{set("/images/0/node_tools", `"yes"`)},
			errs: []want{has("/images/0/node_tools", "got string, want boolean or object")},
		},
		{
			name: "node_tools written as 1",
			ops:  []op{set("/images/1/node_tools", `1`)},
			errs: []want{has("/images/1/node_tools", "got number, want boolean or object")},
		},
		{
			name: "node_tools with an unknown setting",
			ops:  []op{set("/images/1/node_tools", `{"fleet_lock": {"url": "http://fl:8080"}}`)},
			errs: []want{has("/images/1/node_tools/fleet_lock", "")},
		},
		{
			name: "node_tools fleetlock without url",
			ops:  []op{set("/images/1/node_tools", `{"fleetlock": {"group": "workers"}}`)},
			errs: []want{has("/images/1/node_tools/fleetlock/url", "required key is missing")},
		},
		{
			name: "node_tools fleetlock with a bad group",
			ops:  []op{set("/images/1/node_tools", `{"fleetlock": {"url": "http://fl:8080", "group": "a b"}}`)},
			errs: []want{has("/images/1/node_tools/fleetlock/group", "")},
		},
		{
			name: "node_tools fleetlock with a file URL",
			ops:  []op{set("/images/1/node_tools", `{"fleetlock": {"url": "file:///srv/lock"}}`)},
			errs: []want{is("/images/1/node_tools/fleetlock/url", `"file:///srv/lock": unsupported scheme file: want the http:// or https:// base URL of a FleetLock server`)},
		},
		{
			name: "node_tools fleetlock without a host",
			ops:  []op{set("/images/1/node_tools", `{"fleetlock": {"url": "http:///x"}}`)},
			errs: []want{has("/images/1/node_tools/fleetlock/url", "no host")},
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

		// Duplicate keys, in any object of the document, at the second one's pointer
		// (lines as mutate writes the document: "name": "centos" is line 5).
		{
			name: "duplicate key in an image",
			ops:  []op{text(`"name": "ubuntu",`, `"name": "ubuntu",`+"\n"+`"name": "ubuntu",`)},
			errs: []want{is("/images/1/name", `duplicate key "name": first at line 11, again at line 12`)},
		},
		{
			name: "duplicate key in a disk id, the last value checked",
			ops:  []op{text(`"value": "vda"`, `"value": "vda",`+"\n"+`"value": 7`)},
			errs: []want{
				is("/partitions/0/id/value", `duplicate key "value": first at line 19, again at line 20`),
				has("/partitions/0/id/value", "got number, want string"),
			},
		},
		{
			name: "duplicate top-level key",
			ops:  []op{set("/boot_mode", `"bios"`), text(`"boot_mode": "bios",`, `"boot_mode": "bios", "boot_mode": "uefi",`)},
			errs: []want{is("/boot_mode", `duplicate key "boot_mode": first at line 2, again at line 2`)},
		},
		{
			name: "duplicate key written with an escape",
			ops:  []op{text(`"name": "centos",`, `"name": "centos", "na\u006de": "centos",`)},
			errs: []want{is("/images/0/name", `duplicate key "name": first at line 5, again at line 5`)},
		},
		{
			name: "duplicate key in the value of an unknown key",
			ops:  []op{set("/partitions/1/volumes/0/extra", `{}`), text(`"extra": {}`, `"extra": {"a~/b": [{"k": 1, "k": 2}]}`)},
			errs: []want{
				is("/partitions/1/volumes/0/extra", `unknown key "extra"`),
				is("/partitions/1/volumes/0/extra/a~0~1b/0/k", `duplicate key "k": first at line 54, again at line 54`),
			},
		},

		// Bounds: beyond one, that is the only error.
		{
			name: "more images than allowed",
			ops:  []op{set("/images", jsonList(65, utilsImage))},
			errs: []want{is("/images", "65 images; at most 64 are allowed")},
		},
		{
			name: "more disks and vgs than allowed",
			ops:  []op{set("/partitions", jsonList(65, diskWith("vda")))},
			errs: []want{is("/partitions", "65 disks and volume groups; at most 64 are allowed")},
		},
		{
			name: "more volumes in a disk than allowed",
			ops:  []op{set("/partitions/0/volumes", jsonList(129, raid("/srv", "ext4")))},
			errs: []want{is("/partitions/0/volumes", "129 volumes in this disk or volume group; at most 128 are allowed")},
		},
		{
			name: "more volumes in a vg than allowed",
			ops:  []op{set("/partitions/1/volumes", jsonList(200, `{"type": "lv"}`))},
			errs: []want{is("/partitions/1/volumes", "200 volumes in this disk or volume group; at most 128 are allowed")},
		},
		{
			name: "more volumes in all disks than allowed",
			ops:  []op{set("/partitions", jsonList(9, diskWith("vda", slices.Repeat([]string{"{}"}, 128)...)))},
			errs: []want{is("/partitions/8/volumes/0", "volume 1025 of the document: at most 1024 volumes are allowed in all disks and volume groups together")},
		},
		{
			name: "more image names in a volume than allowed",
			ops:  []op{set("/partitions/0/volumes/0/images", jsonList(65, `"centos"`))},
			errs: []want{is("/partitions/0/volumes/0/images", "65 image names; at most 64 are allowed")},
		},
		{
			name: "values nested deeper than allowed",
			ops:  []op{set("/images/0/extra", strings.Repeat("[", 14)+strings.Repeat("]", 14))},
			errs: []want{is("/images/0/extra"+strings.Repeat("/0", 13), "values nested more than 16 deep; a provision.json nests at most 6 deep")},
		},
		{
			name: "more keys in one object than allowed",
			ops:  []op{set("/partitions/0/volumes/1", jsonObject(65))},
			errs: []want{is("/partitions/0/volumes/1", "more than 64 keys in one object; the largest object of a provision.json has 12")},
		},
		{
			name: "key longer than allowed",
			ops:  []op{set("/partitions/1/volumes/0/"+strings.Repeat("k", 257), `1`)},
			errs: []want{is("/partitions/1/volumes/0", "a key of 257 bytes; keys are at most 256 bytes (the longest of a provision.json has 18)")},
		},
		{
			name: "more values than allowed",
			ops:  []op{set("/grub", `{"timeout": `+jsonList(1<<16, "0")+`}`)},
			errs: []want{has("", "more than 65536 JSON values (the next one is at /grub/timeout/")},
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
			name: "node_tools on a utility image",
			ops: []op{
				add("/images/-", utilsImage),
				add("/partitions/0/volumes/-", utilsVolume),
				set("/images/2/node_tools", `true`),
			},
			warns: []want{is("/images/2/node_tools", `image "utils" is deployed at "/usr/share/utils", not "/": a utility image is never booted, so node_tools is ignored`)},
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
			name: "node_tools on one OS image",
			ops:  []op{set("/images/1/node_tools", `true`)},
			check: func(t *testing.T, s *schema.Spec) {
				if s.Images[0].NodeTools.On || !s.Images[1].NodeTools.On || s.Images[1].NodeTools.FleetLock != nil {
					t.Errorf("node_tools: centos %v, ubuntu %v; want false, true", s.Images[0].NodeTools, s.Images[1].NodeTools)
				}
			},
		},
		{
			name: "node_tools with a FleetLock server",
			ops:  []op{set("/images/1/node_tools", `{"fleetlock": {"url": "https://fl.example:8443/", "group": "rack-1.workers", "id": "rack1-node7"}}`)},
			check: func(t *testing.T, s *schema.Spec) {
				nt := s.Images[1].NodeTools
				if !nt.On || nt.FleetLock == nil || *nt.FleetLock != (schema.NodeFleetLock{URL: "https://fl.example:8443/", Group: "rack-1.workers", ID: "rack1-node7"}) {
					t.Errorf("node_tools: %+v", nt)
				}
				b, err := json.Marshal(s.Images[1].NodeTools)
				if err != nil || string(b) != `{"fleetlock":{"url":"https://fl.example:8443/","group":"rack-1.workers","id":"rack1-node7"}}` {
					t.Errorf("node_tools marshals to %s, %v", b, err)
				}
				if b, _ := json.Marshal(s.Images[0]); strings.Contains(string(b), "node_tools") {
					t.Errorf("an image without node_tools marshals to %s", b)
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
	})
}

// runLoadCases loads each case's document and checks the errors (and then that no
// unknown-key error hides among them), the warnings and the spec.
func runLoadCases(t *testing.T, tests []loadCase) {
	t.Helper()
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
