package fleetlock

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// MachineIDFile is where systemd keeps the machine's identity. It is meant to stay
// private to the machine, hence NodeID's hash.
const MachineIDFile = "/etc/machine-id"

// AppID is the provisioner's application id: the node id is the machine id hashed with
// it, so that the provisioner's id of a node differs from the ids other programs derive
// (Fedora CoreOS's update agent uses its own application id) and none of them reveals
// the machine id.
const AppID = "f4ed44a2102146139e537f7a63fc55ea"

// AppSpecificID derives an application-specific id from a machine id, as libsystemd's
// sd_id128_get_machine_app_specific does (and `systemd-id128 machine-id -a APP` prints):
// HMAC-SHA256 keyed by the 16 bytes of the machine id over the 16 bytes of the app id,
// its first 16 bytes made a version 4 UUID, written as 32 lowercase hex digits. Both ids
// are 32 hex digits, or a UUID with dashes.
func AppSpecificID(machineID, appID string) (string, error) {
	key, err := parseID128(machineID)
	if err != nil {
		return "", fmt.Errorf("machine id: %w", err)
	}
	app, err := parseID128(appID)
	if err != nil {
		return "", fmt.Errorf("app id: %w", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write(app)
	id := m.Sum(nil)[:16]
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // variant RFC 4122
	return hex.EncodeToString(id), nil
}

// parseID128 reads a 128-bit id written as 32 hex digits, with or without a UUID's dashes.
func parseID128(s string) ([]byte, error) {
	t := strings.TrimSpace(s)
	if len(t) == 36 && t[8] == '-' && t[13] == '-' && t[18] == '-' && t[23] == '-' {
		t = strings.ReplaceAll(t, "-", "")
	}
	b, err := hex.DecodeString(t)
	if err != nil || len(b) != 16 {
		return nil, fmt.Errorf("%q is not a 128-bit id (32 hex digits)", brief(s))
	}
	return b, nil
}

// ProductUUIDFile is where Linux shows the machine's SMBIOS system UUID (readable by
// root only). The firmware keeps it, so every OS on a multi-boot node, and every OS a
// reload writes, reads the same one; each OS's /etc/machine-id is its own.
const ProductUUIDFile = "/sys/class/dmi/id/product_uuid"

// IDSources are the files the node id derives from: the SMBIOS system UUID first, the
// machine id when the firmware gives none. Tests point them elsewhere.
type IDSources struct {
	ProductUUID, MachineID string
}

// DefaultIDSources are a node's own files.
var DefaultIDSources = IDSources{ProductUUID: ProductUUIDFile, MachineID: MachineIDFile}

// NodeID is the node's id for the protocol: the machine's SMBIOS system UUID hashed with
// AppID, or, on a machine whose firmware gives no usable one, its machine id hashed the
// same way (the libsystemd application-specific id). It does not reveal either.
//
// The system UUID comes first because the slot must be released by the OS the node
// reboots into: on a node with several OSes, or after a reload, that OS has another
// machine id than the one that took the slot, and a release under another id would leave
// the slot held. Firmware that leaves the UUID unset (all zeros or all ones) gives none.
func NodeID(src IDSources) (string, error) {
	data, err := os.ReadFile(src.ProductUUID)
	switch {
	case err == nil && usableSystemUUID(string(data)):
		id, err := AppSpecificID(string(data), AppID)
		if err != nil {
			return "", fmt.Errorf("fleetlock: node id from %s: %w", src.ProductUUID, err)
		}
		return id, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		// Falling back to the machine id here would give this OS another id than a run
		// that can read the file: a slot taken under one would never be released.
		return "", fmt.Errorf("fleetlock: node id: %w (run as root, or set the id)", err)
	}
	data, err = os.ReadFile(src.MachineID)
	if err != nil {
		return "", fmt.Errorf("fleetlock: node id: no SMBIOS system UUID in %s, and %w", src.ProductUUID, err)
	}
	id, err := AppSpecificID(string(data), AppID)
	if err != nil {
		return "", fmt.Errorf("fleetlock: node id from %s: %w", src.MachineID, err)
	}
	return id, nil
}

// usableSystemUUID reports whether s is a 128-bit id the firmware actually set: SMBIOS
// says all zeros means unset and all ones means not present.
func usableSystemUUID(s string) bool {
	b, err := parseID128(s)
	if err != nil {
		return false
	}
	zeros, ones := true, true
	for _, c := range b {
		zeros = zeros && c == 0
		ones = ones && c == 0xff
	}
	return !zeros && !ones
}

// brief cuts s for an error message.
func brief(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
