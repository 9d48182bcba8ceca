package schema

import (
	"net/url"
	"strings"
)

// checkRamdisk checks the ramdisk extension: its directory URL and its checksum file's URL
// must be http, https or file URLs a fetch can use. A spec without an OS image installs no
// bootloader, so the ramdisk would have no menu entry: it is ignored with a warning.
func (c *checker) checkRamdisk() {
	r := c.spec.Ramdisk
	if r == nil {
		return
	}
	if r.URL != "" {
		if why := fetchURLProblem(r.URL); why != "" {
			c.errf("/ramdisk/url", "%q: %s: want the http://, https:// or file:// URL of the directory holding vmlinuz and initramfs.cpio.zst", brief(r.URL), why)
		}
	}
	if r.Checksum != "" {
		if why := fetchURLProblem(r.Checksum); why != "" {
			c.errf("/ramdisk/checksum", "%q: %s: want the http://, https:// or file:// URL of a checksum file listing vmlinuz and initramfs.cpio.zst (one digest cannot cover both files)", brief(r.Checksum), why)
		}
	}
	if c.spec.RootImages() == 0 {
		c.warnf("/ramdisk", "ignored: no image has target \"/\", so no bootloader is installed to boot the ramdisk from")
	}
}

// fetchURLProblem says what is wrong with u as an http, https or file URL, "" when nothing.
func fetchURLProblem(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return "not a URL"
	}
	switch strings.ToLower(parsed.Scheme) {
	case "http", "https":
		if parsed.Host == "" {
			return "no host"
		}
	case "file":
		if parsed.Host != "" && parsed.Host != "localhost" {
			return "a file URL names this machine, not " + parsed.Host
		}
		if parsed.Path == "" {
			return "no path"
		}
	case "":
		return "no scheme"
	default:
		return "unsupported scheme " + parsed.Scheme
	}
	return ""
}
