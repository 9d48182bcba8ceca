package bootloader

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
)

// Bounds on what is read from programs whose output depends on untrusted images: far
// above anything real (a handful of lines per root), low enough that a runaway grub.cfg
// cannot make us hold or encode unbounded data.
const (
	maxProberOutput = 1 << 20 // bytes of one os-prober or linux-boot-prober output parsed
	maxProberLines  = 4096    // lines of one such output parsed
	maxChildReport  = 8 << 20 // bytes of the child's JSON the parent accepts
)

// proberFormat versions the JSON the child prints. Self may name another build of the
// provisioner than the parent's (an upgraded binary on disk, a wrapper), so the parent
// refuses any other version rather than misreading it.
const proberFormat = 1

// proberReport is the JSON the child prints. It is private to this package: only a
// provisioner binary parses it, and Format says which version wrote it.
type proberReport struct {
	Format int          `json:"format"`
	Roots  []proberRoot `json:"roots"`
}

// proberRoot is one Linux root os-prober reported.
type proberRoot struct {
	Partition string      `json:"partition"` // as os-prober printed it
	Name      string      `json:"name"`      // os-prober's long name, raw
	Entries   []bootEntry `json:"entries,omitempty"`
	Error     string      `json:"error,omitempty"` // why it has no entries
}

// bootEntry is one line of linux-boot-prober, paths already as seen from the root.
type bootEntry struct {
	Root   string `json:"root"`
	Boot   string `json:"boot"`
	Kernel string `json:"kernel"`
	Initrd string `json:"initrd,omitempty"`
}

// decodeReport parses the child's output, refusing another format version, trailing
// data and oversized output.
func decodeReport(b []byte) (proberReport, error) {
	var rep proberReport
	if len(b) > maxChildReport {
		return rep, fmt.Errorf("the prober's report is %d bytes, more than %d", len(b), maxChildReport)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return rep, errors.New("the prober printed no report")
	}
	// The version first, so that a report of another version fails on that and not on
	// whatever field changed.
	var v struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return rep, fmt.Errorf("reading the prober's report: %w", err)
	}
	if v.Format != proberFormat {
		return rep, fmt.Errorf("the prober's report has format %d, this provisioner reads %d: is Self the same build?", v.Format, proberFormat)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		return rep, fmt.Errorf("reading the prober's report: %w", err)
	}
	if dec.More() {
		return rep, errors.New("reading the prober's report: data after the report")
	}
	return rep, nil
}

// osEntry is one line of os-prober: "/dev/sda2:Debian GNU/Linux 12 (bookworm):Debian:linux".
type osEntry struct {
	Partition, Long, Short, Type string
}

// parseOSProber parses os-prober's output, skipping lines that do not have its four
// fields. The long name may itself contain colons (it is the image's PRETTY_NAME), so
// the partition is cut at the first colon and type and short name at the last ones.
func parseOSProber(out []byte) []osEntry {
	var list []osEntry
	seen := map[string]bool{}
	for _, line := range lines(out) {
		part, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(part, "/") {
			continue
		}
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			continue
		}
		rest, typ := rest[:i], rest[i+1:]
		j := strings.LastIndexByte(rest, ':')
		if j < 0 {
			continue
		}
		e := osEntry{Partition: part, Long: rest[:j], Short: rest[j+1:], Type: strings.TrimSpace(typ)}
		if seen[e.Partition] {
			continue
		}
		seen[e.Partition] = true
		list = append(list, e)
	}
	return list
}

// parseBootProber parses linux-boot-prober's "root:boot:label:kernel:initrd:params" lines.
// The params, which we never use (we render our own command line), are the last field
// and may contain colons; the label is stripped of colons by os-prober. Kernel and initrd
// become paths as seen from the root: os-prober 1.81 already prefixes "/boot" when /boot
// is a separate volume (boot != root), older probes give the path on that volume
// ("/vmlinuz-X"), which is prefixed here. Of several initrds (microcode first) the last
// is the real one. Lines without an absolute kernel path, or with control characters
// in a path, are skipped: they come from an image's grub.cfg and end up in ours.
func parseBootProber(out []byte) []bootEntry {
	var list []bootEntry
	for _, line := range lines(out) {
		f := strings.SplitN(line, ":", 6)
		if len(f) != 6 || !strings.HasPrefix(f[0], "/") {
			continue
		}
		e := bootEntry{Root: f[0], Boot: f[1]}
		if e.Boot == "" {
			e.Boot = e.Root
		}
		separateBoot := e.Boot != e.Root
		e.Kernel = rootPath(strings.TrimSpace(f[3]), separateBoot)
		if e.Kernel == "" {
			continue
		}
		if initrds := strings.Fields(f[4]); len(initrds) > 0 {
			e.Initrd = rootPath(initrds[len(initrds)-1], separateBoot)
			if e.Initrd == "" {
				continue
			}
		}
		list = append(list, e)
	}
	return list
}

// rootPath cleans p and makes it relative to the image root when it is relative to a
// separate /boot volume; "" when p is unusable.
func rootPath(p string, separateBoot bool) string {
	if !strings.HasPrefix(p, "/") || strings.IndexFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return ""
	}
	p = path.Clean(p)
	if separateBoot && p != "/boot" && !strings.HasPrefix(p, "/boot/") {
		p = "/boot" + p
	}
	return p
}

// lines splits a program's output into its non-empty lines, within the size bounds.
func lines(out []byte) []string {
	if len(out) > maxProberOutput {
		out = out[:maxProberOutput]
	}
	var list []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, maxProberOutput)
	for sc.Scan() && len(list) < maxProberLines {
		if l := strings.TrimRight(sc.Text(), "\r"); strings.TrimSpace(l) != "" {
			list = append(list, l)
		}
	}
	return list
}
