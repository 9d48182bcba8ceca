package fleetlock

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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

// NodeID is the node's id for the protocol: the machine id read from machineIDFile
// (MachineIDFile on a node) hashed with AppID. It is stable for as long as the machine
// id is, and does not reveal it.
func NodeID(machineIDFile string) (string, error) {
	data, err := os.ReadFile(machineIDFile)
	if err != nil {
		return "", fmt.Errorf("fleetlock: node id: %w", err)
	}
	id, err := AppSpecificID(string(data), AppID)
	if err != nil {
		return "", fmt.Errorf("fleetlock: node id from %s: %w", machineIDFile, err)
	}
	return id, nil
}

// brief cuts s for an error message.
func brief(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
