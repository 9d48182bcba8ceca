// Package deploy puts each image into its own root: fetch (http, https, file; retries
// and Range resume), verify the checksum while streaming, extract tars safely or write
// raw filesystem images, and write the image's fstab from the plan. It reads the
// partition package's plan types and never imports its apply code.
package deploy
