package bootloader

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/partition"
)

// RecordPath is the deploy's record of its plan (partition.Record), beside boot-info.json.
const RecordPath = "provision-record.json"

// maxRecord bounds what is read of the record: a plan is tens of KiB at most, and the file
// sits on a partition anyone with the disk could have changed.
const maxRecord = 16 << 20

// ReadRecord reads the plan record in the boot directory dir. A node deployed before the
// provisioner kept one gets an error matching partition.ErrNoRecord that says so.
func ReadRecord(dir string) (*partition.Record, error) {
	d, err := confine.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the plan record: %w", err)
	}
	defer d.Close()
	data, err := d.ReadFile(RecordPath, maxRecord)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: the node was deployed by a provisioner that did not keep one (before reload existed); deploy it again to reload its images later", d.Path(RecordPath), partition.ErrNoRecord)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the plan record: %w", err)
	}
	r, err := partition.DecodeRecord(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Path(RecordPath), err)
	}
	return r, nil
}
