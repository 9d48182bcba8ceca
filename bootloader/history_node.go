package bootloader

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"sync/atomic"

	"github.com/provisioner/provisioner/internal/confine"
)

// nodeName is the name SetNodeName gave, nil when none.
var nodeName atomic.Pointer[string]

// hostnameFile is read when the kernel's hostname is not set.
const hostnameFile = "/etc/hostname"

// SetNodeName sets the name history records carry in HistoryEntry.Node for the rest of
// the process: the node name the agent reports in its events (agent --node), or the
// deploy's provisioner.node inside the ramdisk. "" returns to the hostname.
func SetNodeName(name string) {
	if name == "" {
		nodeName.Store(nil)
		return
	}
	nodeName.Store(&name)
}

// NodeName is the name of the machine the provisioner runs on, as history records carry
// it: SetNodeName's, else the kernel's hostname (os.Hostname, what the agent's events
// carry by default), else the first line of /etc/hostname when the kernel has none (a
// ramdisk that set none reports "(none)"), else "". An offline operation (--device on a
// disk image) records the host that ran it.
func NodeName() string {
	if p := nodeName.Load(); p != nil {
		return *p
	}
	if h, err := os.Hostname(); err == nil && h != "" && h != "(none)" {
		return h
	}
	data, err := os.ReadFile(hostnameFile)
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSpace(first)
}

// SpecDigest returns "sha256:<hex>" of a spec's JSON as loaded (json.Marshal of the
// schema.Spec, which is what the plan record keeps): the JSON is compacted first, so that
// the record's indented copy and the loaded spec have the same digest. "" for no spec.
func SpecDigest(spec []byte) string {
	if len(bytes.TrimSpace(spec)) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if json.Compact(&buf, spec) == nil {
		spec = buf.Bytes()
	}
	sum := sha256.Sum256(spec)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// recordSpecDigest returns the SpecDigest of the spec in the plan record in d, "" when
// there is no readable record (a node deployed before the provisioner kept one).
func recordSpecDigest(d *confine.Dir) string {
	data, err := d.ReadFile(RecordPath, maxRecord)
	if err != nil {
		return ""
	}
	var r struct {
		Spec json.RawMessage `json:"spec"`
	}
	if json.Unmarshal(data, &r) != nil {
		return ""
	}
	return SpecDigest(r.Spec)
}
