package bootloader

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/partition"
)

// State is what Commit writes to a boot directory: the boot files as one operation leaves
// them.
type State struct {
	// Menu is grub.cfg's new content (Render's), written to Info's grub directory; nil
	// leaves grub.cfg as it is, and the commit only changes which entry boots.
	Menu []byte
	// Info is boot-info.json's new content; its grub_dir says where grub.cfg and grubenv
	// are. It is required.
	Info *BootInfo
	// Env is grubenv's new content, written whole; nil leaves grubenv as it is.
	Env *Env
	// History is appended to history.jsonl, completed as AppendHistory does (its spec
	// digest is Record's when Record is set); nil appends nothing.
	History *HistoryEntry
	// Record is the plan record's new content (RecordPath), written before boot-info.json;
	// nil leaves it as it is.
	Record *partition.Record
}

// CommitOptions are what Commit does besides writing the boot files.
type CommitOptions struct {
	// hook is passed to every WriteFileAtomic; tests simulate a power cut with it.
	hook func(step string) error
}

// Commit writes s to the boot directory d in the crash-safe order, each file replaced as
// WriteFileAtomic does and the history record appended as AppendHistory does, so that a
// power cut at any moment leaves every file either old or new and a disk that boots:
//
//   - With a Menu (a deploy, a reload): grub.cfg, then the plan record,
//     boot-info.json, the history record, and grubenv last. grubenv selects the entry grub boots; by the time it does, that
//     entry is in grub.cfg and described in boot-info.json.
//   - Without one (a switch of the default): grubenv first, since grub reads it, then
//     boot-info.json and the history record. After a cut between the two, grub already
//     boots the new entry and List reports that boot-info.json disagrees. A plan record
//     goes before boot-info.json here too.
//
// Before the first write, every file to be written must be missing or a regular file in
// real directories (confine.Dir.CheckFile) and every content must encode; otherwise
// nothing is written. A commit with a menu gives each file it replaces mode 0644, as a
// deploy's new boot files: what was there before came from an image or an earlier deploy.
// One without keeps an existing file's mode, so that an administrator's choice survives a
// switch.
func Commit(ctx context.Context, d *confine.Dir, s State, o CommitOptions) error {
	if s.Info == nil {
		return errors.New("committing the boot files: no boot info")
	}
	c := &commit{d: d, s: s, o: o, data: map[string][]byte{}}
	order := c.order()
	for _, name := range order {
		if err := d.CheckFile(name); err != nil {
			return &commitError{op: opCheck, file: name, err: err}
		}
	}
	if err := c.encode(); err != nil {
		return err
	}
	for _, name := range order {
		if err := c.write(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// What a commit was doing when it failed (commitError.op).
const (
	opCheck  = "check"
	opEncode = "encode"
	opWrite  = "write"
)

// commitError is a failure of Commit: op on
// file, relative to the boot directory, after the files in written were replaced. Its
// message is err's, which callers wrap with what they were doing.
type commitError struct {
	op, file string
	written  []string
	err      error
}

func (e *commitError) Error() string { return e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// commit is one run of Commit.
type commit struct {
	d *confine.Dir
	s State
	o CommitOptions
	// data holds the encoded content of each file that is replaced, by name.
	data map[string][]byte
	// written lists the files replaced or appended to so far, in order.
	written []string
}

// order lists the files the commit writes in the crash-safe order Commit describes.
func (c *commit) order() []string {
	var menu, record, env []string
	if c.s.Menu != nil {
		menu = append(menu, c.s.Info.grubCfgName())
	}
	if c.s.Record != nil {
		record = append(record, RecordPath)
	}
	record = append(record, BootInfoPath)
	if c.s.History != nil {
		record = append(record, HistoryPath)
	}
	if c.s.Env != nil {
		env = append(env, c.s.Info.GrubEnvName())
	}
	if c.s.Menu != nil {
		return slices.Concat(menu, record, env)
	}
	return slices.Concat(menu, env, record)
}

// encode encodes grubenv and boot-info.json, so that an encoding error stops the commit
// before anything is written.
func (c *commit) encode() error {
	if c.s.Env != nil {
		name := c.s.Info.GrubEnvName()
		data, err := c.s.Env.Encode()
		if err != nil {
			return &commitError{op: opEncode, file: name, err: err}
		}
		c.data[name] = data
	}
	if c.s.Record != nil {
		data, err := c.s.Record.Encode()
		if err != nil {
			return &commitError{op: opEncode, file: RecordPath, err: err}
		}
		c.data[RecordPath] = data
	}
	data, err := c.s.Info.Encode()
	if err != nil {
		return &commitError{op: opEncode, file: BootInfoPath, err: err}
	}
	c.data[BootInfoPath] = data
	if c.s.Menu != nil {
		c.data[c.s.Info.grubCfgName()] = c.s.Menu
	}
	return nil
}

// write does the commit's step name: appends the history record or replaces a file.
func (c *commit) write(ctx context.Context, name string) error {
	var err error
	switch name {
	case HistoryPath:
		h := *c.s.History
		if h.SpecDigest == "" && c.s.Record != nil {
			h.SpecDigest = SpecDigest(c.s.Record.Spec)
		}
		err = appendHistory(c.d, nil, h)
	default:
		err = c.d.WriteFileAtomic(name, c.data[name], c.perm(name), c.o.hook)
	}
	if err != nil {
		return &commitError{op: opWrite, file: name, written: slices.Clone(c.written), err: err}
	}
	c.written = append(c.written, name)
	return nil
}

// perm is the mode the file name gets (see Commit).
func (c *commit) perm(name string) fs.FileMode {
	if c.s.Menu != nil {
		return bootFilePerm
	}
	return c.d.Mode(name, bootFilePerm)
}

// DeployState returns the state a deploy commits to the boot directory d: the menu
// rendered, info, a grubenv that saves info's current element as the default (cancelling
// any pending one-shot entry and any trial of an earlier deploy, whose entries it replaces:
// info's trial too), and the deploy's history record. A caller that boots an entry on trial arms it on the
// state's Env and Info afterwards (ArmTrial).
//
// The grubenv to build on is the one d holds, when it parses: a redeploy over a kept
// multiboot filesystem keeps its other variables; grub's installs never touch it.
func DeployState(d *confine.Dir, menu Config, info *BootInfo) (State, error) {
	def := elementByID(info, info.CurrentElement)
	if def == nil || def.MenuentryID == "" {
		return State{}, fmt.Errorf("boot info: current_element %d names no menu entry", info.CurrentElement)
	}
	h := &HistoryEntry{Operation: "deploy", To: def.OSID, Result: ResultOK, Images: deployedImages(d, info)}
	env := &Env{}
	if old, err := d.ReadFile(info.GrubEnvName(), EnvSize); err == nil {
		if parsed, perr := ParseEnv(old); perr == nil {
			env = parsed
		}
	}
	env.Set(envSavedEntry, def.MenuentryID)
	env.Unset(envNextEntry)
	clearTrial(env)
	info.Trial = nil
	return State{
		Menu:    Render(menu),
		Info:    info,
		Env:     env,
		History: h,
	}, nil
}

// deployedImages lists a deploy's images for its history record (ImageChanges): from the
// boot-info.json d holds from an earlier deploy (a redeploy over a kept multiboot
// partition), when it parses, to info.
func deployedImages(d *confine.Dir, info *BootInfo) []ImageChange {
	old, err := readBootInfo(d, BootInfoPath)
	if err != nil {
		old = nil
	}
	return ImageChanges(old, info)
}

// ImageChanges lists the images of a history record of an operation that took the boot
// entries from before to after (a deploy, an update), matched by os_id: each element of
// after in order, with From its image in before (nil when it is new there), then each
// element of before that after lacks, with To nil (removed). before may be nil (a first
// deploy). An image whose From equals its To is listed too: a deploy rewrote it all the
// same; an update that left it alone drops it from the list before recording.
func ImageChanges(before, after *BootInfo) []ImageChange {
	old := map[string]*ImageVersion{}
	if before != nil {
		for i := range before.Elements {
			old[before.Elements[i].OSID] = elementVersion(&before.Elements[i])
		}
	}
	var out []ImageChange
	kept := map[string]bool{}
	if after != nil {
		for i := range after.Elements {
			e := &after.Elements[i]
			kept[e.OSID] = true
			out = append(out, ImageChange{Name: e.OSID, From: old[e.OSID], To: elementVersion(e)})
		}
	}
	if before != nil {
		for i := range before.Elements {
			if e := &before.Elements[i]; !kept[e.OSID] {
				out = append(out, ImageChange{Name: e.OSID, From: elementVersion(e)})
			}
		}
	}
	return out
}

// elementVersion is the image an element boots, nil when it has none or e is nil (the
// ramdisk's stand-in).
func elementVersion(e *Element) *ImageVersion {
	if e == nil || e.ImageName == "" && e.ImageUUID == "" && e.Digest == "" {
		return nil
	}
	return &ImageVersion{ImageName: e.ImageName, ImageUUID: e.ImageUUID, Digest: e.Digest}
}
