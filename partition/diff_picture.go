package partition

import (
	"cmp"
	"sort"
	"strconv"
	"strings"
)

// PictureWidth is the number of columns a disk's bar has: partitions to scale, each at
// least one column wide.
const PictureWidth = 64

// Marks of the disk bars: each partition's columns are filled with the mark of what the
// update does to it, after its number when the columns leave room for both.
const (
	markKept      = '='
	markGrown     = '>'
	markCreated   = '+'
	markRecreated = '~'
	markDestroyed = 'x'
	markFree      = '.'
)

// PictureLegend explains the marks of the disk bars.
const PictureLegend = "= kept  > grown  + created  ~ re-created  x destroyed  . free"

// segment is one stretch of a disk bar: a partition (number > 0) or free space.
type segment struct {
	number     int
	start, end uint64
	mark       byte
}

// picture draws the disk id before and after: cd as it is now, nd as planned (nil when
// the spec no longer names it), with the marks of changes.
func picture(id string, cd *CurrentDisk, nd *DiskLayout, now map[int]*before, changes []*VolumeChange) DiskPicture {
	fate, made := map[int]VolumeAction{}, map[int]VolumeAction{}
	for _, v := range changes {
		if v.Action != ActionCreated {
			if _, ok := fate[v.Number]; !ok {
				fate[v.Number] = v.Action
			}
		}
		if v.Action != ActionDestroyed {
			made[v.Number] = v.Action
		}
	}
	ss := cd.SectorSize
	if ss == 0 {
		ss = 512
	}
	total := cd.SizeBytes / ss
	var was, will []segment
	for _, n := range sortedNumbers(now) {
		was = append(was, segment{number: n, start: now[n].Start, end: now[n].End, mark: markOf(fate[n])})
	}
	planned := map[int]bool{}
	if nd != nil {
		for _, p := range nd.Partitions {
			planned[p.Number] = true
			will = append(will, segment{number: p.Number, start: p.Start, end: p.End, mark: markOf(made[p.Number])})
		}
	}
	for _, v := range changes {
		// A partition left alone stays where it is, outside the spec.
		if b := now[v.Number]; v.Action == ActionKept && !planned[v.Number] && b != nil {
			will = append(will, segment{number: v.Number, start: b.Start, end: b.End, mark: markKept})
		}
	}
	align := Align / ss
	return DiskPicture{Disk: id, SizeBytes: cd.SizeBytes,
		Before: drawBar(withFree(was, total, align)), After: drawBar(withFree(will, total, align))}
}

// markOf returns the bar mark of an action.
func markOf(a VolumeAction) byte {
	switch a {
	case ActionGrown:
		return markGrown
	case ActionCreated:
		return markCreated
	case ActionRecreated:
		return markRecreated
	case ActionDestroyed:
		return markDestroyed
	}
	return markKept
}

// withFree orders the partitions by start and adds the free stretches between them, and
// before and after them, of at least align sectors (smaller ones are alignment slack,
// not space). The first align sectors hold the GPT: they are never free.
func withFree(parts []segment, total, align uint64) []segment {
	sort.Slice(parts, func(i, j int) bool { return parts[i].start < parts[j].start })
	var out []segment
	next := align
	for _, p := range parts {
		if p.start >= next+align {
			out = append(out, segment{start: next, end: p.start - 1, mark: markFree})
		}
		out = append(out, p)
		next = max(next, p.end+1)
	}
	if total >= next+align {
		out = append(out, segment{start: next, end: total - 1, mark: markFree})
	}
	return out
}

// drawBar draws the segments in PictureWidth columns between '|'.
func drawBar(segs []segment) string {
	sizes := make([]uint64, len(segs))
	for i, s := range segs {
		sizes[i] = s.end - s.start + 1
	}
	cols := columns(sizes, PictureWidth)
	var b strings.Builder
	b.WriteByte('|')
	for i, s := range segs {
		b.WriteString(fill(s, cols[i]))
	}
	b.WriteByte('|')
	return b.String()
}

// fill renders a segment in n columns: its number then its mark, or only the mark when
// there is no room for both and the partition changes.
func fill(s segment, n int) string {
	label := ""
	if s.number > 0 {
		label = strconv.Itoa(s.number)
	}
	switch {
	case len(label)+1 <= n:
	case len(label) <= n && s.mark == markKept:
	default:
		label = ""
	}
	return label + strings.Repeat(string(s.mark), n-len(label))
}

// columns shares width columns among sizes in proportion, each at least one: whole
// shares first, the columns left over to the largest remainders, and when the
// one-column minimums overflow, columns taken back from the widest. It is
// deterministic: ties go to the first.
func columns(sizes []uint64, width int) []int {
	cols := make([]int, len(sizes))
	var total uint64
	for _, s := range sizes {
		total += s
	}
	if total == 0 || len(sizes) == 0 {
		return cols
	}
	used := 0
	rem := make([]uint64, len(sizes))
	for i, s := range sizes {
		q := s * uint64(width) / total
		rem[i] = s * uint64(width) % total
		cols[i] = max(1, int(q))
		if q == 0 {
			rem[i] = 0
		}
		used += cols[i]
	}
	for ; used < width; used++ {
		i := argmax(rem)
		cols[i]++
		rem[i] = 0
	}
	for ; used > width; used-- {
		w := argmax(cols)
		if cols[w] <= 1 {
			break
		}
		cols[w]--
	}
	return cols
}

// argmax returns the index of the largest value, the first of equals.
func argmax[T cmp.Ordered](xs []T) int {
	best := 0
	for i, x := range xs {
		if x > xs[best] {
			best = i
		}
	}
	return best
}
