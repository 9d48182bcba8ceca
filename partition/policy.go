package partition

import "github.com/provisioner/provisioner/schema"

// Policy is a layout's partitions_policy resolved into what applying the layout does.
// clean wipes the named disks and creates everything. verify requires the disks to hold
// the layout already: it compares them with the plan before it writes anything, brings
// up what they hold, and re-creates only the filesystems without keep_data.
// nailgun_legacy is verify when anything has keep_data and clean otherwise, as Bareon
// had it.
type Policy struct {
	l *Layout
	// verify is true when the disks must already hold the layout.
	verify bool
}

// PolicyOf resolves l's partitions_policy.
func PolicyOf(l *Layout) Policy {
	recreate := l.Policy == schema.PolicyClean || l.Policy == schema.PolicyNailgunLegacy && !l.AnyKeepData()
	return Policy{l: l, verify: !recreate}
}

// ComparesFirst reports whether the disks must already hold the layout: a run reads them
// and compares them with the plan before it writes anything, and fails on the first
// difference.
func (p Policy) ComparesFirst() bool { return p.verify }

// WipesOnFailure reports whether a failed run may erase the partition tables it wrote:
// only when everything is created anew is nothing on the disks worth keeping.
func (p Policy) WipesOnFailure() bool { return !p.verify }

// Actions builds the policy's steps on devs, in the order a run executes them and
// --dry-run prints them. Building them reads nothing and writes nothing: the steps that
// need what earlier ones read get it when they run.
func (p Policy) Actions(devs Devices) ([]Action, error) {
	if !p.verify {
		return CleanActions(p.l, devs)
	}
	if err := checkDevices(p.l, devs); err != nil {
		return nil, err
	}
	return verifyActions(p.l, devs), nil
}

// AnyKeepData reports whether any partition, filesystem or volume group is to be kept.
func (l *Layout) AnyKeepData() bool {
	for _, d := range l.Disks {
		for _, p := range d.Partitions {
			if p.KeepData {
				return true
			}
		}
	}
	for _, fs := range l.Filesystems() {
		if fs.KeepData {
			return true
		}
	}
	for _, vg := range l.VGs {
		if vg.KeepData {
			return true
		}
	}
	return false
}
