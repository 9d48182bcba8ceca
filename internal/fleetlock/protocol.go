// Package fleetlock speaks FleetLock, the small HTTP protocol with which nodes of a fleet
// take and release a reboot slot of their group, so that at most a group's number of
// slots are rebooting at once: the client that every reboot the provisioner causes can
// go through, and a server keeping its counting semaphores in a Store (etcd, with the
// same keys and values as the protocol's reference server, in package etcdstore), so
// that either server can run on the same etcd and either client can talk to either
// server. This package links no etcd client: only the server's commands need one.
package fleetlock

import (
	"fmt"
	"regexp"
)

// The protocol's fixed parts. A request is a POST with the header HeaderName set to
// "true" and a JSON Request body; 200 is success, anything else a failure, whose body is
// a JSON Error.
const (
	HeaderName      = "fleet-lock-protocol"
	PreRebootPath   = "/v1/pre-reboot"   // take a slot (recursive: a holder taking it again succeeds)
	SteadyStatePath = "/v1/steady-state" // release it (idempotent: releasing what one does not hold succeeds)
	DefaultGroup    = "default"
)

// groupPattern is what a group name must match.
var groupPattern = regexp.MustCompile(`^[a-zA-Z0-9.-]+$`)

// ValidGroup reports whether g is a group name the protocol allows.
func ValidGroup(g string) bool { return groupPattern.MatchString(g) }

// ClientParams identify a node and its group.
type ClientParams struct {
	ID    string `json:"id"`
	Group string `json:"group"`
}

// Request is the body of both endpoints.
type Request struct {
	ClientParams ClientParams `json:"client_params"`
}

// The error kinds of the reference server, which clients may match on.
const (
	KindInvalidClientIdentity = "invalid_client_identity" // bad header, body, id or group (400)
	KindUnknownGroup          = "unknown_group"           // a group the server is not configured for (400)
	KindFailedSemInit         = "failed_sem_init"         // the semaphore could not be read or made (500)
	KindFailedLock            = "failed_lock"             // no slot free, or the store failed (500)
	KindGeneric               = "generic_error"
)

// Error is a failure's body: a machine-friendly kind and a human-friendly value. As an
// error, it carries the HTTP status it came with.
type Error struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
	// Status is the HTTP status code (not part of the body).
	Status int `json:"-"`
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("fleetlock: %s (HTTP %d): %s", e.Kind, e.Status, e.Value)
	}
	return fmt.Sprintf("fleetlock: %s: %s", e.Kind, e.Value)
}
