// Package schema reads provision.json: Load bounds the document's size and shape, checks
// it against the embedded JSON Schema (draft 2020-12) and then the rules a schema cannot
// express (references between disks, volume groups and images, sizes, ids), and returns
// the typed Spec. Every problem carries its JSON pointer, and Load reports all of them
// (up to a hundred) rather than the first. Bareon's Ironic-driver documents load as they
// are; our extensions are additional keys. The package does no I/O besides reading the
// document and depends on nothing else of the provisioner.
package schema
