package initramfs

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ChecksumsName is the checksum file Build writes beside the kernel and the archive, so
// that a spec keeping the ramdisk on the node ("ramdisk": {"checksum": ...}) can have
// both verified when they are fetched.
const ChecksumsName = "SHA256SUMS"

// WriteChecksums writes dir/SHA256SUMS in sha256sum's format ("<hex>  <name>"), one line
// per file of files (paths), named by their base names, in the order given. The file is
// replaced by rename, so a reader never sees half of it.
func WriteChecksums(dir string, files ...string) error {
	var b strings.Builder
	for _, p := range files {
		sum, err := fileSHA256(p)
		if err != nil {
			return fmt.Errorf("initramfs: checksums: %w", err)
		}
		fmt.Fprintf(&b, "%x  %s\n", sum, filepath.Base(p))
	}
	f, err := os.CreateTemp(dir, "."+ChecksumsName+"-*.tmp")
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("initramfs: writing %s: %w", filepath.Join(dir, ChecksumsName), err)
	}
	return finish(f.Name(), filepath.Join(dir, ChecksumsName))
}

func fileSHA256(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	return h.Sum(nil), nil
}
