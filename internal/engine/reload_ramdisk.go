package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
)

// The kernel command line words of the deploy ramdisk's reload mode. The ramdisk's boot
// flow reads them back; RamdiskReload.Words writes them.
const (
	// WordReload names the image to reload (its os_id); it turns the reload mode on.
	WordReload    = "provisioner.reload"
	WordURL       = "provisioner.url"
	WordChecksum  = "provisioner.checksum"
	WordFormat    = "provisioner.format"
	WordImageUUID = "provisioner.image_uuid"
	WordImageName = "provisioner.image_name"
	WordTries     = "provisioner.tries"
	WordNoTrial   = "provisioner.no_trial"
	// WordKept says the ramdisk was booted from the copy kept on the node: with nothing
	// else to do, it checks the node's boot files and reports a failed trial or reload.
	WordKept = "provisioner.kept"
	// The callback's words are those of a deploy.
	WordCallback = "provisioner.callback"
	WordToken    = "provisioner.token"
	WordNode     = "provisioner.node"
	// WordAgent is the address the ramdisk serves its agent API on, as for a deploy.
	WordAgent = "provisioner.agent"
)

// MaxCmdline is the longest kernel command line the ramdisk's kernel takes on x86
// (COMMAND_LINE_SIZE is 2048 bytes with the final NUL); the kernel cuts a longer one.
const MaxCmdline = 2047

// RamdiskReload is what a reload through the deploy ramdisk carries on the ramdisk's
// kernel command line.
type RamdiskReload struct {
	// Image is the os_id of the image to reload.
	Image string
	// URL, Checksum, Format, ImageUUID, ImageName, Tries and NoTrial are reload's.
	URL, Checksum, Format, ImageUUID, ImageName string
	Tries                                       int
	NoTrial                                     bool
	// Report says where the ramdisk reports: the callback, its token and the node name.
	Report RamdiskReport
}

// RamdiskReport is where the ramdisk booted from the node reports its events, and where
// it serves its agent API (Agent, a listen address; the API takes Token).
type RamdiskReport struct {
	Callback, Token, Node, Agent string
}

// Words returns the kernel words of the reload, in a fixed order; empty values are left
// out, and a value with a space is in double quotes, which the kernel removes.
func (r RamdiskReload) Words() []string {
	w := []string{word(WordReload, r.Image), word(WordURL, r.URL)}
	for _, kv := range [][2]string{{WordChecksum, r.Checksum}, {WordFormat, r.Format}, {WordImageUUID, r.ImageUUID}, {WordImageName, r.ImageName}} {
		if kv[1] != "" {
			w = append(w, word(kv[0], kv[1]))
		}
	}
	if r.NoTrial {
		w = append(w, WordNoTrial+"=1")
	} else if r.Tries > 0 {
		w = append(w, WordTries+"="+strconv.Itoa(r.Tries))
	}
	return append(w, r.Report.Words()...)
}

// Words returns provisioner.kept=1 and the report's words.
func (r RamdiskReport) Words() []string {
	w := []string{WordKept + "=1"}
	for _, kv := range [][2]string{{WordCallback, r.Callback}, {WordToken, r.Token}, {WordNode, r.Node}, {WordAgent, r.Agent}} {
		if kv[1] != "" {
			w = append(w, word(kv[0], kv[1]))
		}
	}
	return w
}

// word is key=value, with the value in double quotes when it holds a blank.
func word(key, value string) string {
	if strings.ContainsAny(value, " \t") {
		return key + `="` + value + `"`
	}
	return key + "=" + value
}

// checkValues refuses values the kernel's command line parser would mangle: a double
// quote (it has no escape) or a control character.
func checkValues(values map[string]string) error {
	for k, v := range values {
		if strings.IndexFunc(v, func(c rune) bool { return c == '"' || (!unicode.IsPrint(c) && c != ' ') }) >= 0 {
			return Usagef("reload: %s: a double quote or a control character cannot be carried on the ramdisk's kernel command line", k)
		}
	}
	return nil
}

// checkWords refuses a command line longer than MaxCmdline, with the lengths.
func checkWords(words []string) error {
	if n := len(strings.Join(words, " ")); n > MaxCmdline {
		return Usagef("reload: the ramdisk's kernel command line would be %d bytes, over the kernel's %d: shorten the URLs or the token", n, MaxCmdline)
	}
	return nil
}

// ViaRamdiskOptions say how a reload goes through the deploy ramdisk kept on the node.
type ViaRamdiskOptions struct {
	// RamdiskURL, when set, fetches the ramdisk (vmlinuz and initramfs.cpio.zst under
	// this directory URL) onto the multiboot partition first, replacing a kept one;
	// RamdiskChecksum is a checksum file listing both.
	RamdiskURL, RamdiskChecksum string
	// Fetcher fetches the ramdisk (nil: the reload's).
	Fetcher *deploy.Fetcher
	// Report is where the ramdisk reports its events.
	Report RamdiskReport
	// Kexec, when set, loads the ramdisk's kernel (paths on the mounted multiboot
	// filesystem) with the command line for a kexec, instead of making grub boot it once.
	Kexec func(ctx context.Context, kernel, initrd, cmdline string) error
}

// StagedReload says what StageReloadViaRamdisk prepared.
type StagedReload struct {
	// Element is the image to reload, as boot-info.json has it now.
	Element bootloader.Element
	// Cmdline is the ramdisk's kernel command line.
	Cmdline string
	// Ramdisk is the kept ramdisk; Fetched says whether it was fetched by this run.
	Ramdisk *bootloader.RamdiskInfo
	Fetched bool
	// Kexec says the ramdisk is loaded for kexec; otherwise grub boots it once.
	Kexec bool
}

// StageReloadViaRamdisk prepares a reload that the deploy ramdisk kept on the node does
// after a reboot: the way to reload the root the node runs from. It reads the record and
// finds the image, as Reload does, checks the new image's source, format and checksum,
// makes sure the ramdisk is kept (fetching it with RamdiskURL), writes the ramdisk's boot
// entry with the reload on its kernel command line, and makes grub boot it once at the
// next boot (or loads it for kexec). It writes nothing to any image's root: the ramdisk
// does the reload, with Reload's code and crash-safe order, and arms the trial.
func StageReloadViaRamdisk(ctx context.Context, o ReloadOptions, v ViaRamdiskOptions) (res *StagedReload, err error) {
	r := &reload{o: o, events: emitter(o.Events), log: o.Log}
	if err := r.check(); err != nil {
		return nil, err
	}
	if err := checkValues(map[string]string{"--url": o.URL, "--checksum": o.Checksum, "--format": o.Format, "--image-uuid": o.ImageUUID,
		"--image-name": o.ImageName, "--callback": v.Report.Callback, "--token": v.Report.Token, "--node": v.Report.Node, "--agent": v.Report.Agent}); err != nil {
		return nil, err
	}
	r.o.BootDir.Writable = true
	err = withBootDir(ctx, r.o.BootDir, func(bd *BootDir) error {
		r.bd = bd
		res, err = r.stageViaRamdisk(ctx, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// stageViaRamdisk is StageReloadViaRamdisk's work on the open boot files.
func (r *reload) stageViaRamdisk(ctx context.Context, v ViaRamdiskOptions) (*StagedReload, error) {
	o, bd := r.o, r.bd
	if err := r.readPlan(); err != nil {
		return nil, err
	}
	if r.bi.MultibootPartition == "" {
		return nil, Environmentf("reload --via-ramdisk: this node keeps grub in the image's /boot, which the reload re-creates: the ramdisk needs the multiboot partition (deploy with \"ramdisk\" in the spec)")
	}
	res := &StagedReload{Element: r.el, Kexec: v.Kexec != nil}
	if err := r.preflight(ctx); err != nil {
		return nil, err
	}
	var err error
	if res.Ramdisk, res.Fetched, err = r.keptRamdisk(ctx, v); err != nil {
		return nil, err
	}
	rr := RamdiskReload{Image: r.el.OSID, URL: o.URL, Checksum: o.Checksum, Format: o.Format,
		ImageUUID: o.ImageUUID, ImageName: o.ImageName, Tries: r.o.Tries, NoTrial: o.NoTrial, Report: v.Report}
	words := append(append([]string{}, res.Ramdisk.Cmdline...), rr.Words()...)
	if err := checkWords(words); err != nil {
		return nil, err
	}
	res.Cmdline = strings.Join(words, " ")
	entry := bootloader.RamdiskEntry{BootUUID: r.bi.MultibootPartition, Args: words}
	if err := bootloader.WriteRamdiskEntry(ctx, bd.Path, entry); err != nil {
		return nil, fmt.Errorf("reload --via-ramdisk: writing the ramdisk's boot entry: %w", err)
	}
	why := fmt.Sprintf("reload of %s from %s staged: the deploy ramdisk boots next and reloads it", r.el.OSID, o.URL)
	if v.Kexec != nil {
		why = fmt.Sprintf("reload of %s from %s staged: the deploy ramdisk is loaded for kexec and reloads it", r.el.OSID, o.URL)
		if err := v.Kexec(ctx, filepath.Join(bd.Path, bootloader.RamdiskKernel), filepath.Join(bd.Path, bootloader.RamdiskInitrd), res.Cmdline); err != nil {
			return nil, Environmentf("reload --via-ramdisk --kexec: loading the ramdisk: %w", err)
		}
	}
	var menu *bootloader.Config
	if res.Fetched {
		// grub.cfg of a node deployed without the ramdisk does not source its entry yet.
		cfg, err := r.menuWith(bootloader.Kernel{})
		if err != nil {
			return nil, err
		}
		menu = &cfg
	}
	if err := bootloader.StageRamdiskBoot(ctx, bd.Path, why, v.Kexec == nil, menu); err != nil {
		return nil, err
	}
	return res, nil
}

// keptRamdisk returns the ramdisk kept on the multiboot partition, fetching it first when
// asked to; fetched says whether it did.
func (r *reload) keptRamdisk(ctx context.Context, v ViaRamdiskOptions) (_ *bootloader.RamdiskInfo, fetched bool, _ error) {
	if v.RamdiskURL == "" {
		info, err := bootloader.ReadRamdisk(r.bd.Path)
		if errors.Is(err, bootloader.ErrNoRamdisk) {
			return nil, false, Environmentf("reload --via-ramdisk: the deploy ramdisk is not kept on this node's multiboot partition (%w): give --ramdisk-url, the directory URL of the vmlinuz and initramfs.cpio.zst that `make ramdisk` builds", err)
		}
		return info, false, err
	}
	fetcher := v.Fetcher
	if fetcher == nil {
		fetcher = r.d.Fetcher
	}
	// The kept ramdisk's console words, else the node's own (KeepRamdisk drops what
	// names the node's root or boot files).
	var base []string
	if prev, err := bootloader.ReadRamdisk(r.bd.Path); err == nil {
		base = prev.Cmdline
	} else if line, err := os.ReadFile("/proc/cmdline"); err == nil && r.bd.Live {
		base = bootloader.KernelWords(string(line))
	}
	r.events.emit(Event{Message: "fetching the deploy ramdisk from " + v.RamdiskURL})
	info, err := KeepRamdisk(ctx, KeepRamdiskOptions{Fetcher: fetcher, URL: v.RamdiskURL, Checksum: v.RamdiskChecksum,
		Dir: r.bd.Path, BootUUID: r.bi.MultibootPartition, Cmdline: base})
	return info, true, err
}
