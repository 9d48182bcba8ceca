package deploy

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"

	"github.com/BurntSushi/toml"
	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// Where node_tools puts the provisioner and its confirm unit in an image's root.
const (
	// NodeToolsProgram is the provisioner program in the image.
	NodeToolsProgram = "/usr/local/sbin/provisioner"
	// ConfirmUnitFile is the confirm unit, where the administrator's units go.
	ConfirmUnitFile = "/etc/systemd/system/provisioner-confirm.service"
	// ConfirmUnitLink is the link `systemctl enable` makes for the unit's WantedBy.
	ConfirmUnitLink = "/etc/systemd/system/multi-user.target.wants/provisioner-confirm.service"
	// FleetLockConfigFile is the node's FleetLock client configuration, written when the
	// image's node_tools name a FleetLock server; the provisioner's reboot commands and
	// confirm read it there.
	FleetLockConfigFile = "/etc/provisioner/fleetlock.toml"
)

// ConfirmUnit is the systemd unit node_tools installs: once the booted OS has reached
// boot-complete.target, it runs `provisioner confirm --fleetlock-release`, which ends a
// trial boot by making this OS the default (and changes nothing when no trial is
// pending), then, when a FleetLock server is configured (FleetLockConfigFile), releases
// the node's reboot slot, taken before the reboot that led here: at every boot, the slot
// is held until the OS that came up is confirmed healthy. The unit wants and follows
// network-online.target, so that the release does not go out before the network is up
// (the release itself retries while the server cannot be reached).
//
// boot-complete.target is systemd's point of a successful boot: the image's health
// checks order themselves before it and are required by it, so it is reached only when
// all of them succeeded. The target is not part of a boot unless a unit pulls it in;
// a unit that is to run only after a good boot requires it and is ordered after it,
// hence Requires= and After=. When a check fails, the target fails, this unit's job
// fails with it, confirm never runs, and grub's try counter rolls the node back.
//
// WantedBy=multi-user.target brings the unit into every normal boot (graphical.target
// includes multi-user.target). DefaultDependencies=no is what keeps that from making an
// ordering cycle: a target is otherwise ordered after every unit it wants, while health
// checks (systemd-boot-check-no-failures.service is one) are ordered after
// multi-user.target and before boot-complete.target, which this unit follows. The
// default dependencies that matter are then given by hand: stopped at shutdown, and
// run after multi-user.target, so that even with no health check at all (the target is
// then reached right after early boot) confirm waits for the services to have started.
const ConfirmUnit = `# Installed by the provisioner (images[].node_tools): confirms a trial boot.
[Unit]
Description=Confirm this boot to the provisioner
DefaultDependencies=no
Requires=boot-complete.target
Wants=network-online.target
After=boot-complete.target multi-user.target network-online.target
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
ExecStart=` + NodeToolsProgram + ` confirm --fleetlock-release

[Install]
WantedBy=multi-user.target
`

// ErrNotStatic is matched by the refusal of a provisioner program that is not statically
// linked: node_tools cannot install it.
var ErrNotStatic = errors.New("not a statically linked program")

// selfProgram is the running program, whatever has since been done to its file.
const selfProgram = "/proc/self/exe"

// nodeToolsSource returns the path of the program node_tools installs and how messages
// name it.
func (d *Deployer) nodeToolsSource() (file, name string) {
	if d.NodeToolsBinary != "" {
		return d.NodeToolsBinary, d.NodeToolsBinary
	}
	name = "the running provisioner"
	if exe, err := os.Executable(); err == nil {
		name += " (" + exe + ")"
	}
	return selfProgram, name
}

// CheckNodeTools fails, when an image asks for the node tools, unless the provisioner
// program to install is a statically linked ELF program; a deploy calls it before the
// first write. Its errors match ErrNotStatic for a program that is not static.
func (d *Deployer) CheckNodeTools(images []*partition.Image) error {
	i := slices.IndexFunc(images, func(im *partition.Image) bool { return im.NodeTools })
	if i < 0 {
		return nil
	}
	file, name := d.nodeToolsSource()
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("image %s asks for node_tools: %w", images[i].Name, err)
	}
	defer f.Close()
	if err := checkStatic(name, f); err != nil {
		return fmt.Errorf("image %s asks for node_tools: %w", images[i].Name, err)
	}
	return nil
}

// checkStatic fails unless r holds an ELF program without a PT_INTERP header. A program
// with one is dynamically linked: the kernel starts its loader, which loads the C library
// of the system it runs on, and an image's may be another version or missing.
func checkStatic(name string, r io.ReaderAt) error {
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("%s is not an ELF program (%v): %w", name, err, ErrNotStatic)
	}
	defer f.Close()
	if (f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN) || f.Entry == 0 {
		return fmt.Errorf("%s is an ELF %s without an entry point, not a program: %w", name, f.Type, ErrNotStatic)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		interp, _ := io.ReadAll(io.LimitReader(p.Open(), 4096))
		return fmt.Errorf("%s is dynamically linked (loader %s), and an image's C library may differ from this system's: node_tools needs a provisioner built with CGO_ENABLED=0, as the deploy ramdisk's is: %w",
			name, bytes.TrimRight(interp, "\x00"), ErrNotStatic)
	}
	return nil
}

// readNodeTools reads the program node_tools installs, whole, and checks that the bytes
// read are those of a static program.
func (d *Deployer) readNodeTools() (prog []byte, name string, err error) {
	file, name := d.nodeToolsSource()
	if prog, err = os.ReadFile(file); err != nil {
		return nil, name, fmt.Errorf("reading %s for node_tools: %w", name, err)
	}
	if err := checkStatic(name, bytes.NewReader(prog)); err != nil {
		return nil, name, err
	}
	return prog, name, nil
}

// nodeTools installs the node tools into a whole-OS image that asks for them, once its
// tree and fstab are complete.
func (dp *deployment) nodeTools(ctx context.Context) error {
	if !dp.im.NodeTools || dp.im.Target != "/" {
		return nil
	}
	prog, name, err := dp.d.readNodeTools()
	if err != nil {
		return err
	}
	if err := installNodeTools(dp.root, prog, dp.im.NodeFleetLock); err != nil {
		return classify(ctx, treeFault, err)
	}
	dp.log.Info("node tools installed", "image", dp.im.Name, "program", NodeToolsProgram, "from", name,
		"unit", ConfirmUnitFile, "enabled", ConfirmUnitLink)
	if fl := dp.im.NodeFleetLock; fl != nil {
		dp.log.Info("FleetLock client configured", "image", dp.im.Name, "file", FleetLockConfigFile, "url", fl.URL, "group", fl.Group)
	}
	return nil
}

// installNodeTools writes prog at NodeToolsProgram (0755), ConfirmUnit at
// ConfirmUnitFile (0644) and the link that enables it, and with fl the FleetLock client
// configuration at FleetLockConfigFile (0644), in the image tree at root, owned
// by root when the provisioner runs as root (it does for a deploy). Everything stays
// inside the tree: every directory written in must be a real one (a symlink the image
// planted, to a host path or not, is refused before anything is written), and each file
// replaces whatever stood at its name without following it. Nothing of the image runs.
func installNodeTools(root string, prog []byte, fl *schema.NodeFleetLock) error {
	d, err := confine.Open(root)
	if err != nil {
		return fmt.Errorf("installing node tools: %w", err)
	}
	defer d.Close()
	dirs := []string{path.Dir(NodeToolsProgram), path.Dir(ConfirmUnitFile), path.Dir(ConfirmUnitLink)}
	if fl != nil {
		dirs = append(dirs, path.Dir(FleetLockConfigFile))
	}
	for _, dir := range dirs {
		if err := d.CheckMkdir(dir); err != nil {
			return fmt.Errorf("installing node tools: %w", err)
		}
	}
	for _, dir := range dirs {
		if err := d.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("installing node tools: %w", err)
		}
	}
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{NodeToolsProgram, prog, 0o755},
		{ConfirmUnitFile, []byte(ConfirmUnit), 0o644},
	}
	if fl != nil {
		conf, err := FleetLockConfig(fl)
		if err != nil {
			return fmt.Errorf("installing node tools: %w", err)
		}
		files = append(files, struct {
			name string
			data []byte
			perm os.FileMode
		}{FleetLockConfigFile, conf, 0o644})
	}
	for _, f := range files {
		if err := d.WriteFileAtomic(f.name, f.data, f.perm, nil); err != nil {
			return fmt.Errorf("installing node tools: %w", err)
		}
		if os.Geteuid() == 0 {
			if err := d.Lchown(f.name, 0, 0); err != nil {
				return fmt.Errorf("installing node tools: %w", err)
			}
		}
	}
	// systemctl enable links to the unit by its absolute path on the booted system.
	if err := d.Symlink(ConfirmUnitFile, ConfirmUnitLink); err != nil {
		return fmt.Errorf("installing node tools: %w", err)
	}
	return nil
}

// FleetLockConfig renders the FleetLock client configuration of fl as the provisioner
// reads it on the node (TOML: base_url, group and id).
func FleetLockConfig(fl *schema.NodeFleetLock) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# Written by the provisioner (images[].node_tools.fleetlock): the server whose\n# reboot slots this node's reboots take, released by provisioner confirm.\n")
	err := toml.NewEncoder(&b).Encode(struct {
		BaseURL string `toml:"base_url"`
		Group   string `toml:"group,omitempty"`
		ID      string `toml:"id,omitempty"`
	}{fl.URL, fl.Group, fl.ID})
	if err != nil {
		return nil, fmt.Errorf("FleetLock configuration: %w", err)
	}
	return b.Bytes(), nil
}
