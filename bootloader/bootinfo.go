package bootloader

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/provisioner/provisioner/internal/confine"
)

// ErrUnknownEntry is matched by errors of BootInfo.Find for an id or name that is not in
// boot-info.json, so that switch-default can report it as a usage error.
var ErrUnknownEntry = errors.New("unknown boot entry")

// BootInfo is boot-info.json: Bareon's keys with Bareon's meaning, plus ours.
type BootInfo struct {
	Elements           []Element `json:"elements"`
	CurrentElement     int       `json:"current_element"`        // grub_id of the default entry
	MultibootPartition string    `json:"multiboot_partition"`    // filesystem UUID of the multiboot partition ("" for a single image)
	PendingOnce        *int      `json:"pending_once,omitempty"` // grub_id set with switch-default --once, until it has booted
	// GrubDir is grub's directory relative to the directory holding boot-info.json:
	// "boot/grub" on the multiboot partition, "grub" in a single image's /boot.
	GrubDir string `json:"grub_dir,omitempty"`
	// Trial is the trial boot armed in grubenv (see ArmTrial), nil when none is pending.
	Trial *Trial `json:"trial,omitempty"`
	// LastTrial is how the last trial ended (confirmed or rolled back), nil before the first.
	LastTrial *TrialOutcome `json:"last_trial,omitempty"`
}

// GrubEnv returns the path of grubenv for the boot-info.json in dir. A file without
// grub_dir (Bareon's, or older) is on a multiboot partition.
func (b *BootInfo) GrubEnv(dir string) string {
	return filepath.Join(dir, filepath.FromSlash(b.GrubEnvName()))
}

// GrubEnvName is grubenv's path relative to the directory holding boot-info.json. ReadBootInfo
// has checked that grub_dir stays below that directory.
func (b *BootInfo) GrubEnvName() string {
	g := b.GrubDir
	if g == "" {
		g = DefaultGrubDir
	}
	return path.Join(g, "grubenv")
}

// grubDirName is grub's directory relative to the directory holding boot-info.json.
func (b *BootInfo) grubDirName() string {
	if b.GrubDir == "" {
		return DefaultGrubDir
	}
	return path.Clean(b.GrubDir)
}

// grubCfgName is grub.cfg's path relative to the directory holding boot-info.json.
func (b *BootInfo) grubCfgName() string {
	return path.Join(b.grubDirName(), "grub.cfg")
}

// Element is one deployed image's boot entry. The first six keys are Bareon's; the rest
// are ours and let list and switch-default work without mounting the images.
type Element struct {
	GrubID      int               `json:"grub_id"` // index of the menuentry in our grub.cfg
	ImageName   string            `json:"image_name"`
	OSID        string            `json:"os_id"` // the image's name in the spec
	ImageUUID   string            `json:"image_uuid"`
	BootName    string            `json:"boot_name"` // the menu title
	RootUUID    string            `json:"root_uuid"`
	MenuentryID string            `json:"menuentry_id"`
	Kernel      string            `json:"kernel"`
	Initrd      string            `json:"initrd"`
	Cmdline     string            `json:"cmdline"`
	Filesystems map[string]string `json:"filesystems"` // mount point -> filesystem UUID
	// Digest is the verified checksum of the image's stream ("sha256:<hex>"), "" when the
	// spec or the reload gave none.
	Digest string `json:"digest,omitempty"`
	// State is "" for an image that is in place, ElementReloading from the moment a reload
	// may write its root until it is committed, and ElementFailed after a reload that
	// failed: such an image's root may be half written.
	State string `json:"state,omitempty"`
	// StateError is the error of the failed reload.
	StateError string `json:"state_error,omitempty"`
}

// Element states (Element.State).
const (
	ElementReloading = "reloading"
	ElementFailed    = "failed"
)

// maxBootInfo bounds what is read of boot-info.json: a real one is a few KiB, and the file
// sits on a partition anyone with the disk could have changed.
const maxBootInfo = 4 << 20

// ReadBootInfo reads and decodes boot-info.json at file; the directory holding it is
// trusted, the file is not (it must be a regular file, see internal/confine). Unknown keys
// are ignored, so a file written by a newer provisioner, or by Bareon, still reads. A
// grub_dir leading out of the directory (absolute, or with "..") is refused: switch-default
// would write grubenv there.
func ReadBootInfo(file string) (*BootInfo, error) {
	d, err := confine.Open(filepath.Dir(file))
	if err != nil {
		return nil, fmt.Errorf("reading boot info: %w", err)
	}
	defer d.Close()
	return readBootInfo(d, filepath.Base(file))
}

// readBootInfo reads boot-info.json as ReadBootInfo, from name inside d.
func readBootInfo(d *confine.Dir, name string) (*BootInfo, error) {
	where := d.Path(name)
	data, err := d.ReadFile(name, maxBootInfo)
	if err != nil {
		return nil, fmt.Errorf("reading boot info %s: %w", where, err)
	}
	var b BootInfo
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("parsing boot info %s: %w", where, err)
	}
	if b.GrubDir != "" && !confine.Local(b.GrubDir) {
		return nil, fmt.Errorf("boot info %s: grub_dir %q: %w", where, b.GrubDir,
			&confine.UnsafeError{Path: d.Path(b.GrubDir), Reason: "is not below the directory of boot-info.json (absolute or with \"..\")"})
	}
	return &b, nil
}

// Encode returns the file's content: indented JSON with a trailing newline. It is
// deterministic (struct fields in declaration order, map keys sorted by encoding/json),
// so that rewriting an unchanged BootInfo yields the same bytes. Nil slices and maps are
// written as [] and {}, because consumers such as Bareon's conductor iterate them.
func (b *BootInfo) Encode() ([]byte, error) {
	// Work on a copy so that filling in empty maps does not change the caller's value.
	c := *b
	c.Elements = append(make([]Element, 0, len(b.Elements)), b.Elements...)
	for i := range c.Elements {
		if c.Elements[i].Filesystems == nil {
			c.Elements[i].Filesystems = map[string]string{}
		}
	}
	data, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding boot info: %w", err)
	}
	return append(data, '\n'), nil
}

// Find resolves a grub_id ("1") or a name (an element's os_id or image_name) to an element;
// an unknown one is an error that lists the valid ids and names.
//
// A number is tried as a grub_id first, then as a name, so an image named "2" can still be
// chosen by name unless it clashes with an id. Only a number written the way grub_id is
// written counts as one: "+1", "01" and "-0" are names (and unknown ones, unless an image
// is called so), never a roundabout way to say 1 or 0. os_id is unique per spec and wins
// over image_name; an image_name shared by several elements is ambiguous and an error.
func (b *BootInfo) Find(idOrName string) (*Element, error) {
	if id, err := strconv.Atoi(idOrName); err == nil && strconv.Itoa(id) == idOrName {
		for i := range b.Elements {
			if b.Elements[i].GrubID == id {
				return &b.Elements[i], nil
			}
		}
	}
	for i := range b.Elements {
		if b.Elements[i].OSID == idOrName {
			return &b.Elements[i], nil
		}
	}
	var found []*Element
	for i := range b.Elements {
		if b.Elements[i].ImageName == idOrName {
			found = append(found, &b.Elements[i])
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("boot entry %q: %w; valid: %s", idOrName, ErrUnknownEntry, b.validEntries())
	default:
		ids := make([]string, len(found))
		for i, e := range found {
			ids[i] = strconv.Itoa(e.GrubID)
		}
		return nil, fmt.Errorf("boot entry %q: image name shared by grub ids %s; use a grub id or os id", idOrName, strings.Join(ids, ", "))
	}
}

// validEntries lists every element as `id (os_id, image_name)` for error messages.
func (b *BootInfo) validEntries() string {
	if len(b.Elements) == 0 {
		return "none, boot info has no elements"
	}
	parts := make([]string, len(b.Elements))
	for i, e := range b.Elements {
		s := strconv.Itoa(e.GrubID) + " (" + e.OSID
		if e.ImageName != "" && e.ImageName != e.OSID {
			s += ", " + e.ImageName
		}
		parts[i] = s + ")"
	}
	return strings.Join(parts, "; ")
}
