package engine

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// NewSeed picks a random seed for a run whose user gives none, so that two machines
// never share the UUIDs the plan derives from it.
func NewSeed() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("choosing a seed: %w", err)
	}
	return hex.EncodeToString(b), nil
}
