// Package examples holds example provision.json documents, one per supported layout.
// Its test validates each one and compares its plan (seed "golden", disks sized by the
// spec's own "size") and the steps the clean policy would take with the golden files in
// testdata/; `go test ./examples -update` rewrites them after an intended change.
package examples
