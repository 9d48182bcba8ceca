package bootloader

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/provisioner/provisioner/partition"
)

// MenuEntry is one boot menu entry.
type MenuEntry struct {
	// ID is the stable --id: "provisioner-" + the image name, sanitised to [a-z0-9-].
	ID string
	// Title is "<OS name> (<image name>)".
	Title string
	// BootUUID is the filesystem holding the kernel: the image's /boot volume if it has
	// one, else its root.
	BootUUID string
	// Kernel is the path on that filesystem ("/vmlinuz-..." when /boot is separate,
	// "/boot/vmlinuz-..." otherwise); Initrd the same, "" when none.
	Kernel string
	Initrd string
	// Cmdline is "root=UUID=<root uuid> ro <kernel_params>".
	Cmdline string
	// Modules are the grub modules to insmod before search: part_gpt, lvm or mdraid1x
	// when the kernel's filesystem is on one, and its filesystem module.
	Modules []string
}

// Config is the whole menu.
type Config struct {
	// Timeout is the menu timeout in seconds; 0 boots the default at once.
	Timeout int
	// Entries are in images[] order; an entry's grub_id is its index here.
	Entries []MenuEntry
	// Default is the index of the boot image's entry.
	Default int
	// Serial also drives the serial console (ttyS0, 115200).
	Serial bool
	// Ramdisk ends the menu with the kept deploy ramdisk's entry (RamdiskCfgPath), sourced
	// when the file is there, so that it is menu index len(Entries). A trial whose
	// saved_entry is that entry falls back to it.
	Ramdisk bool
}

// entryIDPrefix marks our entries, so they never clash with ids an image's own
// grub.cfg or os-prober would use.
const entryIDPrefix = "provisioner-"

// menuEntryID derives the stable --id of an image's entry from its name.
func menuEntryID(image string) string {
	return entryIDPrefix + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		default:
			return '-'
		}
	}, image)
}

// grubFSModule maps a filesystem type to the grub module that reads it.
var grubFSModule = map[string]string{
	"ext2":  "ext2",
	"ext3":  "ext2",
	"ext4":  "ext2",
	"xfs":   "xfs",
	"btrfs": "btrfs",
	"vfat":  "fat",
	"fat":   "fat",
}

// Entries builds the menu from the plan and each root image's probed kernel (kernels by
// image name; utility images, whose target is not "/", get no entry). The kernel is
// searched for on the image's /boot volume when it mounts one (paths then lose their
// "/boot" prefix), else on its root; root=UUID comes from Image.RootUUID and the rest
// of the command line is kernelParams (the spec's deploy_data.kernel_params).
func Entries(l *partition.Layout, kernels map[string]Kernel, kernelParams string) ([]MenuEntry, error) {
	vols := newVolumeKinds(l)
	params := strings.Join(strings.Fields(kernelParams), " ")
	var out []MenuEntry
	ids := map[string]string{}
	for _, im := range l.Images {
		if im.Target != "/" {
			continue
		}
		k, err := rootKernel(im, kernels)
		if err != nil {
			return nil, err
		}
		id := menuEntryID(im.Name)
		if other, dup := ids[id]; dup {
			// Two names that sanitise alike would make saved_entry ambiguous.
			return nil, fmt.Errorf("images %s and %s: both give the menu entry id %s", other, im.Name, id)
		}
		ids[id] = im.Name
		e, err := menuEntry(im, k, id, params, vols)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// rootKernel returns the kernel probed for the root image im, once it is known that a menu
// entry can boot it.
func rootKernel(im *partition.Image, kernels map[string]Kernel) (Kernel, error) {
	k, ok := kernels[im.Name]
	if !ok {
		return Kernel{}, fmt.Errorf("image %s: no kernel probed", im.Name)
	}
	if k.Path == "" {
		return Kernel{}, fmt.Errorf("image %s: kernel has no path", im.Name)
	}
	if im.RootUUID == "" {
		return Kernel{}, fmt.Errorf("image %s: no root filesystem uuid in the plan", im.Name)
	}
	return k, nil
}

// menuEntry builds the entry with id that boots the root image im with its kernel k;
// params are the kernel parameters after root= and ro.
func menuEntry(im *partition.Image, k Kernel, id, params string, vols volumeKinds) (MenuEntry, error) {
	kfs, kernelPath, initrdPath, err := kernelLocation(im, k)
	if err != nil {
		return MenuEntry{}, err
	}
	mods, err := vols.modules(kfs)
	if err != nil {
		return MenuEntry{}, fmt.Errorf("image %s: %w", im.Name, err)
	}
	osName := k.OSName
	if osName == "" {
		osName = "Linux"
	}
	cmdline := "root=UUID=" + im.RootUUID + " ro"
	if params != "" {
		cmdline += " " + params
	}
	return MenuEntry{
		ID:       id,
		Title:    osName + " (" + im.Name + ")",
		BootUUID: kfs.FSUUID,
		Kernel:   kernelPath,
		Initrd:   initrdPath,
		Cmdline:  cmdline,
		Modules:  mods,
	}, nil
}

// kernelLocation returns the filesystem holding im's kernel (its /boot volume when it
// mounts one, else its root) and the kernel's and initrd's paths there.
func kernelLocation(im *partition.Image, k Kernel) (kfs *partition.Mount, kernel, initrd string, err error) {
	root, boot := im.MountAt("/"), im.MountAt("/boot")
	if boot == nil {
		if root == nil {
			return nil, "", "", fmt.Errorf("image %s: nothing is mounted at /", im.Name)
		}
		return root, k.Path, k.Initrd, nil
	}
	if kernel, err = onBootFS(k.Path); err != nil {
		return nil, "", "", fmt.Errorf("image %s: kernel: %w", im.Name, err)
	}
	if k.Initrd != "" {
		if initrd, err = onBootFS(k.Initrd); err != nil {
			return nil, "", "", fmt.Errorf("image %s: initrd: %w", im.Name, err)
		}
	}
	return boot, kernel, initrd, nil
}

// volumeKinds says which filesystems, by UUID, are on an LVM logical volume or an md
// array: grub needs a module to reach those.
type volumeKinds struct {
	onLVM, onMD map[string]bool
}

func newVolumeKinds(l *partition.Layout) volumeKinds {
	v := volumeKinds{onLVM: map[string]bool{}, onMD: map[string]bool{}}
	for _, vg := range l.VGs {
		for _, lv := range vg.LVs {
			if lv.FS != nil {
				v.onLVM[lv.FS.UUID] = true
			}
		}
	}
	for _, r := range l.RAIDs {
		if r.FS != nil {
			v.onMD[r.FS.UUID] = true
		}
	}
	return v
}

// modules returns the grub modules to insmod before searching for the kernel's filesystem
// kfs: part_gpt, lvm or mdraid1x when kfs is on one, and kfs's filesystem module.
func (v volumeKinds) modules(kfs *partition.Mount) ([]string, error) {
	fsMod, ok := grubFSModule[kfs.FSType]
	if !ok {
		return nil, fmt.Errorf("grub cannot read the %s filesystem holding the kernel", kfs.FSType)
	}
	mods := []string{"part_gpt"}
	switch {
	case v.onLVM[kfs.FSUUID]:
		mods = append(mods, "lvm")
	case v.onMD[kfs.FSUUID]:
		mods = append(mods, "mdraid1x")
	}
	return append(mods, fsMod), nil
}

// onBootFS turns a path seen from the image's root into one on its separate /boot
// filesystem, where grub finds it.
func onBootFS(p string) (string, error) {
	rest, ok := strings.CutPrefix(p, "/boot/")
	if !ok || rest == "" {
		return "", fmt.Errorf("%s is not under the separate /boot volume", p)
	}
	return "/" + rest, nil
}

// Render writes grub.cfg, the same bytes for the same Config: a header, the terminal
// settings, load_env, the choice of the entry to boot (see writeSelection), the timeout,
// one menuentry per entry and, with Ramdisk, the sourcing of the ramdisk's entry. Every word
// taken from the plan or an image is quoted for grub's shell syntax.
func Render(c Config) []byte {
	var b bytes.Buffer
	b.WriteString("# grub.cfg written by the provisioner; it is rewritten on every deploy.\n")
	b.WriteString("# The default entry is saved_entry in grubenv: change it with `provisioner switch-default`.\n\n")
	if c.Serial {
		b.WriteString("serial --unit=0 --speed=115200\n")
		b.WriteString("terminal_input serial console\n")
		b.WriteString("terminal_output serial console\n")
	} else {
		b.WriteString("terminal_input console\n")
		b.WriteString("terminal_output console\n")
	}
	// Without the test, a missing grubenv prints an error at every boot.
	b.WriteString("\nif [ -s $prefix/grubenv ]; then\n  load_env\nfi\n")
	writeSelection(&b, c)
	fmt.Fprintf(&b, "set timeout=%d\n", max(c.Timeout, 0))
	for _, e := range c.Entries {
		fmt.Fprintf(&b, "\nmenuentry %s --id %s {\n", grubQuoteAlways(e.Title), grubQuoteAlways(e.ID))
		for _, m := range e.Modules {
			fmt.Fprintf(&b, "\tinsmod %s\n", grubQuote(m))
		}
		fmt.Fprintf(&b, "\tsearch --no-floppy --fs-uuid --set=root %s\n", grubQuote(e.BootUUID))
		b.WriteString("\tlinux " + grubQuote(e.Kernel))
		for _, w := range kernelWords(e.Cmdline) {
			b.WriteString(" " + grubQuote(w))
		}
		b.WriteString("\n")
		if e.Initrd != "" {
			fmt.Fprintf(&b, "\tinitrd %s\n", grubQuote(e.Initrd))
		}
		b.WriteString("}\n")
	}
	if c.Ramdisk {
		// source adds the file's menuentries to this menu, after the ones above; a node
		// whose ramdisk was not kept (or was removed) gets no entry and no error.
		fmt.Fprintf(&b, "\n%s\n", ramdiskSource)
	}
	return b.Bytes()
}

// ramdiskSource is the line of grub.cfg that adds the kept ramdisk's entry to the menu.
const ramdiskSource = `if [ -s "$prefix/` + ramdiskCfgName + `" ] ; then source "$prefix/` + ramdiskCfgName + `" ; fi`

// writeSelection writes the script that sets default, in this order:
//
//   - A one-shot next_entry (switch-default --once) wins, exactly as grub's 00_header
//     handles it: it is cleared before it boots, so the boot after returns to the default.
//     A pending trial is left alone for that boot and loses no try.
//   - A trial (trial_entry, see ArmTrial) with tries left boots its entry. One try is
//     taken off trial_tries and saved before the entry boots, so a kernel that panics or
//     hangs still used its try: the counter is a string of one character per try, because
//     upstream grub script has no arithmetic, and regexp can drop the first character.
//     save_env rewrites grubenv's sectors in place, which grub can only do on a plain
//     filesystem (not LVM or RAID). saved_entry stays the previous default, and fallback
//     (a menu index in upstream grub, not an id, hence one test per entry) is its index,
//     so that an entry whose kernel or initrd cannot be loaded falls back to the
//     previous default in the same boot instead of stopping at grub's error.
//   - A trial with no try left is over: its entry is moved to trial_failed (list, history
//     and confirm report and note it) and saved_entry boots. trial_entry is emptied with
//     "set var=", not unset: save_env writes an empty value as it is, while it deletes an
//     unset variable from grubenv, and every test of the script reads empty as not set.
//     With Ramdisk, saved_entry may also name the ramdisk's entry (a node whose only image is
//     on trial falls back to the ramdisk): its index is len(Entries), after every entry.
//   - Else saved_entry, the default.
//   - With no default at all (a fresh, cleared or unreadable grubenv), the plan's boot
//     image rather than grub's first entry.
func writeSelection(b *bytes.Buffer, c Config) {
	b.WriteString("if [ \"${next_entry}\" ] ; then\n")
	b.WriteString("   set default=\"${next_entry}\"\n")
	b.WriteString("   set next_entry=\n")
	b.WriteString("   save_env next_entry\n")
	b.WriteString("   set boot_once=true\n")
	b.WriteString("elif [ \"${trial_entry}\" ] ; then\n")
	b.WriteString("   if [ \"${trial_tries}\" ] ; then\n")
	b.WriteString("      regexp --set 1:trial_tries '^.(.*)$' \"${trial_tries}\"\n")
	b.WriteString("      save_env trial_tries\n")
	b.WriteString("      set default=\"${trial_entry}\"\n")
	if c.Default >= 0 && c.Default < len(c.Entries) {
		fmt.Fprintf(b, "      set fallback=%d\n", c.Default)
	}
	for i, e := range c.Entries {
		fmt.Fprintf(b, "      if [ \"${saved_entry}\" = %s ] ; then set fallback=%d ; fi\n", grubQuote(e.ID), i)
	}
	if c.Ramdisk {
		fmt.Fprintf(b, "      if [ \"${saved_entry}\" = %s ] ; then set fallback=%d ; fi\n", grubQuote(RamdiskEntryID), len(c.Entries))
	}
	b.WriteString("   else\n")
	b.WriteString("      set trial_failed=\"${trial_entry}\"\n")
	b.WriteString("      set trial_entry=\n")
	b.WriteString("      save_env trial_failed trial_entry\n")
	b.WriteString("      set default=\"${saved_entry}\"\n")
	b.WriteString("   fi\n")
	b.WriteString("else\n")
	b.WriteString("   set default=\"${saved_entry}\"\n")
	b.WriteString("fi\n")
	if c.Default >= 0 && c.Default < len(c.Entries) {
		// A fresh or cleared grubenv must still boot the plan's boot image, not entry 0.
		fmt.Fprintf(b, "%s\n   set default=%s\nfi\n", fallbackGuard, grubQuote(c.Entries[c.Default].ID))
	}
}

// fallbackGuard is the line of Render's grub.cfg before the fallback default.
const fallbackGuard = `if [ -z "${default}" ] ; then`

// FallbackEntry returns the menu entry id a grub.cfg written by Render boots when grubenv
// names none (missing, cleared or unreadable grubenv); "" when cfg has no such fallback.
func FallbackEntry(cfg []byte) string {
	lines := strings.Split(string(cfg), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != fallbackGuard {
			continue
		}
		v, ok := strings.CutPrefix(strings.TrimSpace(lines[i+1]), "set default=")
		if !ok {
			return ""
		}
		return grubUnquote(v)
	}
	return ""
}

// grubUnquote undoes grubQuote.
func grubUnquote(s string) string {
	if !strings.HasPrefix(s, "'") {
		return s
	}
	return strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(s, "'"), "'"), `'\''`, "'")
}

// kernelWords splits a command line the way the kernel does: at blanks, except inside
// double quotes, which stay part of the word so the kernel still sees them.
func kernelWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
			cur.WriteRune(r)
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			inWord = true
			cur.WriteRune(r)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// grubQuote returns s as one grub shell word: bare when it has only characters grub
// never treats specially, else single-quoted.
func grubQuote(s string) string {
	if s == "" {
		return "''"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r)) {
			return grubQuoteAlways(s)
		}
	}
	return s
}

// grubQuoteAlways single-quotes s for grub. Nothing is special inside single quotes
// and a quote cannot be escaped there, so each ' closes the string, adds an escaped
// quote and reopens it, as grub-mkconfig's own quoting does.
func grubQuoteAlways(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
