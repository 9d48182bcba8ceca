// Package deploy puts each image into its own root: it fetches the image (http, https,
// file; retries and Range resume), verifies its checksum while streaming, extracts a tar
// safely or writes a raw filesystem image, and writes the image's fstab from the plan.
// Its errors say whose fault a failure is: ErrImage the image's, ErrWrite the target's.
// It reads the partition package's plan types and never imports its apply code.
package deploy
