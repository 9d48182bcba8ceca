package schema

import (
	"strings"
)

// fileSystems are the filesystems the planner makes, by the name mkfs knows them.
var fileSystems = []string{"ext2", "ext3", "ext4", "xfs", "vfat", "swap"}

// checkFSName lower-cases file_system, as Bareon does ("EXT4" is ext4), and checks that
// it names a filesystem we make.
func (c *checker) checkFSName(v *Volume, ptr string) {
	if v.FileSystem == "" {
		return
	}
	v.FileSystem = strings.ToLower(v.FileSystem)
	for _, fs := range fileSystems {
		if v.FileSystem == fs {
			return
		}
	}
	c.errf(ptr+"/file_system", "file_system %q is not one of %s (in any case)", v.FileSystem, strings.Join(fileSystems, ", "))
}

// checkPartitionGUID checks the form of partition_guid, writes it in upper case and
// reports two partitions asking for one GUID at both pointers: GPT partition GUIDs are
// unique, and udev's /dev/disk/by-partuuid links would name either partition.
func (c *checker) checkPartitionGUID(v *Volume, ptr string) {
	if v.PartitionGUID == "" {
		return
	}
	ptr += "/partition_guid"
	if !isGUID(v.PartitionGUID) {
		c.errf(ptr, "partition_guid %q is not a GUID: 32 hexadecimal digits in groups of 8, 4, 4, 4 and 12 joined by \"-\"", v.PartitionGUID)
		return
	}
	v.PartitionGUID = strings.ToUpper(v.PartitionGUID)
	if c.guids == nil {
		c.guids = map[string]*guidUse{}
	}
	use := c.guids[v.PartitionGUID]
	if use == nil {
		c.guids[v.PartitionGUID] = &guidUse{first: ptr}
		return
	}
	if !use.reported {
		c.errf(use.first, "partition_guid %s is also given at %s: a partition GUID must be unique", v.PartitionGUID, ptr)
		use.reported = true
	}
	c.errf(ptr, "partition_guid %s is already given at %s: a partition GUID must be unique", v.PartitionGUID, use.first)
}

// guidUse is where a partition GUID was first given, and whether that place has been
// reported as sharing it.
type guidUse struct {
	first    string
	reported bool
}

// isGUID reports the textual form of a GUID: 8-4-4-4-12 hexadecimal digits.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if s[i] != '-' {
				return false
			}
		case !isHex(s[i]):
			return false
		}
	}
	return true
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

// mdNameMax is the longest array name mdadm takes: the 1.2 superblock has 32 bytes for
// it, and the name is written there as given (with --homehost=any, no host prefix).
const mdNameMax = 32

// RAIDName returns the array's name as the document gives it, without a leading
// "/dev/" or "/dev/md/": the array is /dev/md/<name>.
func RAIDName(v *Volume) string {
	return strings.TrimPrefix(strings.TrimPrefix(v.Name, "/dev/"), "md/")
}

// checkRAIDName checks a raid name the way mdadm checks a name for /dev/md/<name>: a
// portable file name (ASCII letters, digits, ".", "_" and "-", not starting with "-")
// of at most 32 bytes.
func (c *checker) checkRAIDName(v *Volume, ptr string) {
	if v.Name == "" {
		return
	}
	name := RAIDName(v)
	var why string
	switch {
	case name == "":
		why = "it is empty once the leading /dev/ or /dev/md/ is dropped"
	case name == "." || name == "..":
		why = "it names a directory, not an array"
	case len(name) > mdNameMax:
		why = "it is longer than the 32 bytes mdadm keeps"
	case name[0] == '-':
		why = "it starts with \"-\", which mdadm refuses"
	default:
		for i := 0; i < len(name); i++ {
			b := name[i]
			if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '.' || b == '_' || b == '-') {
				why = "mdadm takes only ASCII letters, digits, \".\", \"_\" and \"-\""
				break
			}
		}
	}
	if why != "" {
		c.errf(ptr+"/name", "raid name %q cannot name /dev/md/<name>: %s", v.Name, why)
	}
}

// impliedPolicy applies Bareon's default policy, verify, to a document that keeps data
// and names no policy: ours (clean) would wipe what keep_data asks to keep. The warning
// is at the first keep_data, which is what chose the policy.
func (c *checker) impliedPolicy() {
	if c.spec.PartitionsPolicy != "" {
		return
	}
	first := ""
	for i := range c.spec.Partitions {
		st := &c.spec.Partitions[i]
		if st.KeepData && first == "" {
			first = Ptr("/partitions", i, "keep_data")
		}
		for j := range st.Volumes {
			if st.Volumes[j].KeepData && first == "" {
				first = Ptr("/partitions", i, "volumes", j, "keep_data")
			}
		}
	}
	if first == "" {
		return
	}
	c.spec.PartitionsPolicy = PolicyVerify
	c.warnf(first, "partitions_policy is absent and keep_data is set: Bareon's default, %q, applies (the disks must already hold this layout; nothing is wiped)", PolicyVerify)
}

// checkDeployData warns about the keys of deploy_data other than kernel_params.
func (c *checker) checkDeployData() {
	if c.spec.DeployData == nil {
		return
	}
	for _, k := range c.spec.DeployData.Ignored {
		c.warnf(Ptr("/deploy_data", k), "deploy_data key %q is ignored: only kernel_params is used", k)
	}
}
