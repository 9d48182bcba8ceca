package partition

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

func TestPlanRAID1(t *testing.T) {
	const doc = `{
	  "images": [{"name": "server", "url": "u", "target": "/"}],
	  "boot_mode": "bios",
	  "partitions": [
	    {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "16 GiB", "volumes": [
	      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "4 GiB"},
	      {"type": "raid", "mount": "/var", "file_system": "xfs", "size": "remaining"}]},
	    {"type": "disk", "id": {"type": "name", "value": "sdb"}, "size": "12 GiB", "volumes": [
	      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "4 GiB"},
	      {"type": "raid", "mount": "/var", "file_system": "xfs", "size": "remaining"}]}]}`
	l := mustPlan(t, doc, nil, "raid")
	// sda 16 GiB: partitions in MiB 1..16383; BIOS boot 1, / 4096, /var 16382-1-4096 = 12285 MiB.
	// sdb 12 GiB: partitions in MiB 1..12287; /var 12286-1-4096 = 8189 MiB.
	checkParts(t, diskByID(t, l, "sda"), []wantPart{
		{1, "BIOS boot", RoleBIOSBoot, 2048, 4095, TypeBIOSBoot},
		{2, "raid-root", RoleRAID, 4096, 8392703, TypeLinuxRAID},
		{3, "raid-var", RoleRAID, 8392704, 33552383, TypeLinuxRAID},
	})
	checkParts(t, diskByID(t, l, "sdb"), []wantPart{
		{1, "BIOS boot", RoleBIOSBoot, 2048, 4095, TypeBIOSBoot},
		{2, "raid-root", RoleRAID, 4096, 8392703, TypeLinuxRAID},
		{3, "raid-var", RoleRAID, 8392704, 25163775, TypeLinuxRAID},
	})
	if len(l.RAIDs) != 2 {
		t.Fatalf("%d arrays, want 2", len(l.RAIDs))
	}
	want := []struct {
		name, mount, fs string
		members         []PartRef
		bytes           uint64
	}{
		{"md0", "/", "ext4", []PartRef{{"sda", 2}, {"sdb", 2}}, 4096 << 20},
		{"md1", "/var", "xfs", []PartRef{{"sda", 3}, {"sdb", 3}}, 8189 << 20},
	}
	for i, w := range want {
		r := l.RAIDs[i]
		if r.Name != w.name || r.Level != 1 || !reflect.DeepEqual(r.Members, w.members) || r.MemberBytes != w.bytes || r.UUID == "" {
			t.Errorf("array %d: %s level %d members %v %d bytes uuid %q; want %s %v %d", i, r.Name, r.Level, r.Members, r.MemberBytes, r.UUID, w.name, w.members, w.bytes)
		}
		if r.FS == nil || r.FS.Mount != w.mount || r.FS.Type != w.fs || r.FS.Device != "/dev/md/"+w.name {
			t.Errorf("array %s filesystem %+v", w.name, r.FS)
		}
		for _, m := range r.Members {
			if p := diskByID(t, l, m.Disk).Partitions[m.Partition-1]; p.RAID != w.name || p.FS != nil {
				t.Errorf("%s#%d: raid %q, fs %v; want member of %s without its own filesystem", m.Disk, m.Partition, p.RAID, p.FS, w.name)
			}
		}
		if want := []string{"/partitions/0/volumes/" + itoa(i), "/partitions/1/volumes/" + itoa(i)}; !reflect.DeepEqual(r.Sources, want) {
			t.Errorf("array %s sources %q, want %q", w.name, r.Sources, want)
		}
	}
	im := l.Images[0]
	if len(im.Mounts) != 2 || im.Mounts[0] != (Mount{"/", "/dev/md/md0", "ext4", l.RAIDs[0].FS.UUID, "defaults"}) ||
		im.Mounts[1] != (Mount{"/var", "/dev/md/md1", "xfs", l.RAIDs[1].FS.UUID, "defaults"}) {
		t.Errorf("mounts %+v", im.Mounts)
	}
	if im.RootUUID != l.RAIDs[0].FS.UUID {
		t.Errorf("root uuid %q, want md0's %q", im.RootUUID, l.RAIDs[0].FS.UUID)
	}
}

func TestPlanRAIDExplicitName(t *testing.T) {
	// The second array asks for md0, so the first, unnamed, one takes the next free
	// name, md1.
	const doc = `{
	  "images": [{"name": "server", "url": "u", "target": "/"}],
	  "boot_mode": "bios",
	  "partitions": [
	    {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "8 GiB", "volumes": [
	      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "4 GiB"},
	      {"type": "raid", "mount": "/var", "file_system": "xfs", "size": "remaining", "name": "/dev/md0"}]},
	    {"type": "disk", "id": {"type": "name", "value": "sdb"}, "size": "8 GiB", "volumes": [
	      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "4 GiB"},
	      {"type": "raid", "mount": "/var", "file_system": "xfs", "size": "remaining"}]}]}`
	l := mustPlan(t, doc, nil, "raid")
	var got []string
	for _, r := range l.RAIDs {
		got = append(got, r.Name+"="+r.FS.Mount)
	}
	if want := []string{"md1=/", "md0=/var"}; !reflect.DeepEqual(got, want) {
		t.Errorf("arrays %q, want %q", got, want)
	}
}

// fstabDoc has two images sharing swap and a data volume, a volume that is not in
// fstab, and mounts declared deepest first.
const fstabDoc = `{
  "images": [
    {"name": "alpha", "url": "u", "target": "/", "boot": true},
    {"name": "beta", "url": "u", "target": "/"}
  ],
  "boot_mode": "bios",
  "partitions": [{
    "type": "disk", "id": {"type": "name", "value": "vda"}, "size": "8 GiB",
    "volumes": [
      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "2 GiB", "images": ["alpha"]},
      {"type": "partition", "mount": "/", "file_system": "xfs", "size": "2 GiB", "images": ["beta"]},
      {"type": "partition", "mount": "/var/log", "file_system": "ext4", "size": "512 MiB", "images": ["alpha"]},
      {"type": "partition", "mount": "/var", "file_system": "ext4", "size": "1 GiB", "images": ["alpha"]},
      {"type": "partition", "mount": "swap", "file_system": "swap", "size": "512 MiB", "images": ["alpha", "beta"]},
      {"type": "partition", "mount": "/opt", "file_system": "ext4", "size": "256 MiB", "images": ["alpha"], "fstab_enabled": false},
      {"type": "partition", "mount": "/boot/efi", "file_system": "vfat", "size": "64 MiB", "images": ["alpha"]},
      {"type": "partition", "mount": "/srv/data", "file_system": "ext4", "size": "remaining",
       "images": ["alpha", "beta"], "fstab_options": "defaults,nofail"}
    ]
  }]
}`

func TestPlanImagesMountsAndFstab(t *testing.T) {
	l := mustPlan(t, fstabDoc, nil, "fstab")
	d := l.Disks[0]
	// Two root images, so: 1 BIOS boot, 2 multiboot, 3 alpha /, 4 beta /, 5 /var/log,
	// 6 /var, 7 swap, 8 /opt, 9 /boot/efi, 10 /srv/data.
	uuid := func(n int) string { return d.Partitions[n-1].FS.UUID }
	alpha, beta := imageByName(t, l, "alpha"), imageByName(t, l, "beta")
	if !alpha.Boot || beta.Boot || l.BootImage != "alpha" {
		t.Errorf("boot: alpha %v beta %v layout %q", alpha.Boot, beta.Boot, l.BootImage)
	}
	// Shallowest first, equal depths by path; swap and /opt (fstab_enabled: false) are
	// not mounted for the deploy.
	wantAlpha := []Mount{
		{"/", "vda#3", "ext4", uuid(3), "defaults"},
		{"/var", "vda#6", "ext4", uuid(6), "defaults"},
		{"/boot/efi", "vda#9", "vfat", uuid(9), "defaults"},
		{"/srv/data", "vda#10", "ext4", uuid(10), "defaults,nofail"},
		{"/var/log", "vda#5", "ext4", uuid(5), "defaults"},
	}
	if !reflect.DeepEqual(alpha.Mounts, wantAlpha) {
		t.Errorf("alpha mounts\n got %+v\nwant %+v", alpha.Mounts, wantAlpha)
	}
	wantBeta := []Mount{
		{"/", "vda#4", "xfs", uuid(4), "defaults"},
		{"/srv/data", "vda#10", "ext4", uuid(10), "defaults,nofail"},
	}
	if !reflect.DeepEqual(beta.Mounts, wantBeta) {
		t.Errorf("beta mounts\n got %+v\nwant %+v", beta.Mounts, wantBeta)
	}
	if alpha.RootUUID != uuid(3) || beta.RootUUID != uuid(4) {
		t.Errorf("root uuids %q %q, want %q %q", alpha.RootUUID, beta.RootUUID, uuid(3), uuid(4))
	}
	if !vfatUUID.MatchString(uuid(9)) {
		t.Errorf("vfat uuid %q is not ABCD-1234", uuid(9))
	}
	if got := d.Partitions[8].FS.Label; got != "EFI" {
		t.Errorf("vfat label %q, want EFI (the mount's last element, upper case)", got)
	}
	// Golden fstab of alpha with seed "fstab". Lines follow the mount order, with /opt
	// in its place but commented out and swap last as "none" with pass 0; "/" has pass
	// 1, every other filesystem 2. The literal UUIDs pin their derivation from the
	// seed: changing it would change the fstab of every machine re-planned from a
	// recorded seed.
	const wantFstab = `# /etc/fstab of image "alpha", written by provisioner.
# <file system>                            <mount point> <type> <options>       <dump> <pass>
UUID=084f6c92-1671-5eed-9fe3-909458afa6ff  /             ext4   defaults        0      1
#UUID=e6458920-c1a5-53b4-a229-573980fe5a4b /opt          ext4   defaults        0      2
UUID=f9ff113d-aaf7-5b4d-a747-b14d952b7e95  /var          ext4   defaults        0      2
UUID=B4F4-113D                             /boot/efi     vfat   defaults        0      2
UUID=f9f40a70-02b4-503e-8560-4cb81fb6d24a  /srv/data     ext4   defaults,nofail 0      2
UUID=e37698f4-d3b9-501e-90d9-c33b3ac9c9fa  /var/log      ext4   defaults        0      2
UUID=daebecd2-1be9-554b-970e-5ee035fa9713  none          swap   sw              0      0
`
	if alpha.Fstab != wantFstab {
		t.Errorf("alpha fstab:\n%s\nwant:\n%s", alpha.Fstab, wantFstab)
	}
	for n, want := range map[int]string{3: "084f6c92-1671-5eed-9fe3-909458afa6ff", 8: "e6458920-c1a5-53b4-a229-573980fe5a4b", 9: "B4F4-113D", 7: "daebecd2-1be9-554b-970e-5ee035fa9713"} {
		if uuid(n) != want {
			t.Errorf("partition %d filesystem uuid %q, want %q", n, uuid(n), want)
		}
	}
	const wantBetaFstab = `# /etc/fstab of image "beta", written by provisioner.
# <file system>                           <mount point> <type> <options>       <dump> <pass>
UUID=580684ac-507c-52f1-a407-7f90587422ca /             xfs    defaults        0      1
UUID=f9f40a70-02b4-503e-8560-4cb81fb6d24a /srv/data     ext4   defaults,nofail 0      2
UUID=daebecd2-1be9-554b-970e-5ee035fa9713 none          swap   sw              0      0
`
	if beta.Fstab != wantBetaFstab {
		t.Errorf("beta fstab:\n%s\nwant:\n%s", beta.Fstab, wantBetaFstab)
	}
}

func TestPlanFstabDisabled(t *testing.T) {
	l := mustPlan(t, fstabDoc, nil, "fstab")
	opt := l.Disks[0].Partitions[7].FS
	if opt.Mount != "/opt" || opt.FstabEnabled {
		t.Fatalf("partition 8 filesystem %+v, want /opt with fstab disabled", opt)
	}
	alpha := imageByName(t, l, "alpha")
	for _, m := range alpha.Mounts {
		if m.Path == "/opt" {
			t.Errorf("/opt is mounted for the deploy: %+v", m)
		}
	}
	var optLine string
	for _, line := range strings.Split(alpha.Fstab, "\n") {
		if strings.Contains(line, opt.UUID) {
			optLine = line
		}
	}
	if !strings.HasPrefix(optLine, "#UUID="+opt.UUID+" ") || !strings.Contains(optLine, "/opt") {
		t.Errorf("/opt line %q, want it commented out", optLine)
	}
}

func TestPlanUtilityImage(t *testing.T) {
	const doc = `{
	  "images": [
	    {"name": "centos", "url": "u", "target": "/", "boot": true},
	    {"name": "ubuntu", "url": "u", "target": "/"},
	    {"name": "utils", "url": "u", "target": "/usr/share/utils"}
	  ],
	  "partitions": [{
	    "type": "disk", "id": {"type": "name", "value": "vda"}, "size": "15000 MB",
	    "volumes": [
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "5000 MB", "images": ["centos"]},
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "5000 MB", "images": ["ubuntu"]},
	      {"type": "partition", "mount": "/usr/share/utils", "file_system": "ext4", "size": "2000",
	       "images": ["centos", "ubuntu", "utils"]},
	      {"type": "partition", "mount": "swap", "file_system": "swap", "size": "1 GiB", "images": ["centos", "ubuntu", "utils"]}
	    ]
	  }]
	}`
	l := mustPlan(t, doc, nil, "utils")
	d := l.Disks[0]
	// 1 BIOS boot, 2 multiboot (two root images), 3 ESP, 4 centos /, 5 ubuntu /,
	// 6 /usr/share/utils, 7 swap.
	if got := roles(d); !reflect.DeepEqual(got, []Role{RoleBIOSBoot, RoleMultiboot, RoleESP, RoleVolume, RoleVolume, RoleVolume, RoleVolume}) {
		t.Fatalf("roles %v", got)
	}
	utilsFS := d.Partitions[5].FS
	utils := imageByName(t, l, "utils")
	if want := []Mount{{"/usr/share/utils", "vda#6", "ext4", utilsFS.UUID, "defaults"}}; !reflect.DeepEqual(utils.Mounts, want) {
		t.Errorf("utils mounts %+v, want %+v", utils.Mounts, want)
	}
	if utils.RootUUID != utilsFS.UUID || utils.Boot || utils.Target != "/usr/share/utils" {
		t.Errorf("utils image %+v", utils)
	}
	if got := mountPaths(imageByName(t, l, "centos")); !reflect.DeepEqual(got, []string{"/", "/usr/share/utils"}) {
		t.Errorf("centos mounts %q", got)
	}
	if got := mountPaths(imageByName(t, l, "ubuntu")); !reflect.DeepEqual(got, []string{"/", "/usr/share/utils"}) {
		t.Errorf("ubuntu mounts %q", got)
	}
}

func TestPlanNodeTools(t *testing.T) {
	const doc = `{
	  "images": [
	    {"name": "centos", "url": "u", "target": "/", "boot": true, "node_tools": true},
	    {"name": "ubuntu", "url": "u", "target": "/", "node_tools": {"fleetlock": {"url": "http://fl:8080", "group": "g"}}},
	    {"name": "utils", "url": "u", "target": "/usr/share/utils", "node_tools": {"fleetlock": {"url": "http://fl:8080"}}}
	  ],
	  "partitions": [{
	    "type": "disk", "id": {"type": "name", "value": "vda"}, "size": "15000 MB",
	    "volumes": [
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "5000 MB", "images": ["centos"]},
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "5000 MB", "images": ["ubuntu"]},
	      {"type": "partition", "mount": "/usr/share/utils", "file_system": "ext4", "size": "2000",
	       "images": ["centos", "ubuntu", "utils"]}
	    ]
	  }]
	}`
	l := mustPlan(t, doc, nil, "tools")
	// The utility image is never booted: its node_tools is dropped.
	for name, want := range map[string]bool{"centos": true, "ubuntu": true, "utils": false} {
		im := imageByName(t, l, name)
		if im.NodeTools != want {
			t.Errorf("image %s: NodeTools %v, want %v", name, im.NodeTools, want)
		}
		if fl := im.NodeFleetLock; (name == "ubuntu") != (fl != nil) || fl != nil && *fl != (schema.NodeFleetLock{URL: "http://fl:8080", Group: "g"}) {
			t.Errorf("image %s: NodeFleetLock %+v", name, fl)
		}
		b, err := json.Marshal(im)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), `"node_tools":true`); got != want {
			t.Errorf("image %s in JSON: %s", name, b)
		}
	}
}
