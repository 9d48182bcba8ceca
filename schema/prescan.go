package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Bounds on one document. The JSON-schema validator and the semantic checks cost memory
// and time per value and per problem; 4 MiB of "{}," is 1.4 million images, each with
// several problems. A streaming pass refuses a document beyond these bounds before they
// run, so validating any accepted document costs what a real spec costs. Each bound is
// many times what a real spec needs: Bareon's own examples have at most three images,
// two disks or vgs and five volumes.
const (
	// maxImages bounds "images" and the "images" list of a volume (a longer list repeats
	// or names unknown images).
	maxImages = 64
	// maxStorages bounds "partitions": disks and volume groups together.
	maxStorages = 64
	// maxVolumesPer bounds the volumes of one disk or vg: a GPT holds 128 entries, of
	// which the planner takes up to three (BIOS boot, multiboot, ESP).
	maxVolumesPer = 128
	// maxVolumes bounds the volumes of all disks and vgs together.
	maxVolumes = 1024
	// maxDepth bounds nesting: the deepest value of the schema, a volume's image name,
	// is six containers down (/partitions/0/volumes/0/images/0).
	maxDepth = 16
	// maxKeys bounds the keys of one object: the largest object of the schema has 12
	// properties, so an object with more has unknown keys anyway.
	maxKeys = 64
	// maxKeyLen bounds the length of a key, in bytes: the longest key of the schema has
	// 18, and the pointer of every value under a key repeats it.
	maxKeyLen = 256
	// maxValues bounds the JSON values of the whole document (containers and scalars,
	// not keys): the largest document within the bounds above that sets every property
	// of every volume once has fewer than 20,000.
	maxValues = 1 << 16
	// maxProblems bounds the errors (and, separately, the warnings) Load reports; one
	// more problem at the document root then says how many are not listed.
	maxProblems = 100
)

// frame is what the streaming pass knows about an open object or array: where it is
// (its role in the schema, for the bounds) and what it holds so far.
type frame struct {
	array bool
	role  role
	n     int            // elements so far, or keys so far
	key   string         // the object's current key
	line  map[string]int // key -> line of its first occurrence
	isKey bool           // the next string token of the object is a key
}

// role names the containers whose size is bounded; the rest are roleOther.
type role uint8

const (
	roleOther role = iota
	roleRoot
	roleImages   // /images
	roleStorages // /partitions
	roleStorage  // /partitions/N
	roleVolumes  // /partitions/N/volumes
	roleVolume   // /partitions/N/volumes/M
	roleRefs     // /partitions/N/volumes/M/images
)

// scan is the state of the streaming pass over one document.
type scan struct {
	data    []byte
	dec     *json.Decoder
	stack   []frame
	maps    []map[string]int // one per depth, reused by the objects at that depth
	values  int
	volumes int

	lineOff, line int // line of the byte at lineOff, advanced as the decoder moves on

	dups     []Problem // duplicate keys, the first maxProblems in document order
	moreDups int       // duplicate keys beyond those
	refusal  *Problem  // the first bound the document exceeds
}

// prescan reads one JSON value from data, token by token, in time linear in its size.
// It reports each duplicate key of an object (which the decoders would take silently,
// last one wins) and stops at the first bound the document exceeds. It leaves syntax
// errors to the decoder that follows, which reports them with their line and column.
func prescan(data []byte) *scan {
	s := &scan{data: data, dec: json.NewDecoder(bytes.NewReader(data)), line: 1}
	s.dec.UseNumber() // no float parsing: numbers are only counted
	for s.refusal == nil {
		tok, err := s.dec.Token()
		if err != nil {
			return s // not JSON, or cut short: the decoder that follows says where
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				s.open(t == '[')
			default:
				s.stack = s.stack[:len(s.stack)-1]
				if len(s.stack) == 0 {
					return s
				}
				s.ended()
			}
		case string:
			if top := s.top(); top != nil && top.isKey {
				s.key(t)
				continue
			}
			s.scalar()
		default:
			s.scalar()
		}
		if len(s.stack) == 0 {
			return s // a scalar document
		}
	}
	return s
}

func (s *scan) top() *frame {
	if len(s.stack) == 0 {
		return nil
	}
	return &s.stack[len(s.stack)-1]
}

// scalar counts a value that is not a container.
func (s *scan) scalar() {
	if s.value(false) {
		s.ended()
	}
}

// open counts a container and pushes it.
func (s *scan) open(array bool) {
	if !s.value(true) {
		return
	}
	if len(s.stack) >= maxDepth {
		s.refuse(s.pointer(), "values nested more than %d deep; a provision.json nests at most 6 deep", maxDepth)
		return
	}
	c := frame{array: array, role: s.childRole(array), isKey: !array}
	if !array {
		d := len(s.stack)
		for len(s.maps) <= d {
			s.maps = append(s.maps, map[string]int{})
		}
		clear(s.maps[d])
		c.line = s.maps[d]
	}
	s.stack = append(s.stack, c)
}

// ended notes that the current value of the enclosing object is complete.
func (s *scan) ended() {
	if top := s.top(); top != nil && !top.array {
		top.isKey = true
	}
}

// childRole is the role of a container opened as the current value of the top one.
func (s *scan) childRole(array bool) role {
	top := s.top()
	if top == nil {
		if array {
			return roleOther
		}
		return roleRoot
	}
	switch {
	case top.role == roleRoot && array && top.key == "images":
		return roleImages
	case top.role == roleRoot && array && top.key == "partitions":
		return roleStorages
	case top.role == roleStorages && !array:
		return roleStorage
	case top.role == roleStorage && array && top.key == "volumes":
		return roleVolumes
	case top.role == roleVolumes && !array:
		return roleVolume
	case top.role == roleVolume && array && top.key == "images":
		return roleRefs
	}
	return roleOther
}

// value counts a value about to be read and checks the bounds of the array holding it.
// It reports whether the scan goes on.
func (s *scan) value(isContainer bool) bool {
	top := s.top()
	if top != nil && top.array {
		top.n++
	}
	s.values++
	if s.values > maxValues {
		s.refuse("", "more than %d JSON values (the next one is at %s); a provision.json has a few hundred", maxValues, s.pointer())
		return false
	}
	if top == nil || !top.array {
		return true
	}
	switch top.role {
	case roleImages:
		return s.bound(top, isContainer, maxImages, "images")
	case roleStorages:
		return s.bound(top, isContainer, maxStorages, "disks and volume groups")
	case roleRefs:
		return s.bound(top, isContainer, maxImages, "image names")
	case roleVolumes:
		if !s.bound(top, isContainer, maxVolumesPer, "volumes in this disk or volume group") {
			return false
		}
		s.volumes++
		if s.volumes > maxVolumes {
			s.refuse(s.pointer(), "volume %d of the document: at most %d volumes are allowed in all disks and volume groups together", s.volumes, maxVolumes)
			return false
		}
	}
	return true
}

// bound refuses the document when the array top has more than max elements, counting
// the rest of them for the message. isContainer tells whether the element being counted
// has just opened.
func (s *scan) bound(top *frame, isContainer bool, max int, what string) bool {
	if top.n <= max {
		return true
	}
	n := top.n + s.countRest(isContainer)
	s.refuse(s.at(len(s.stack)-1), "%d %s; at most %d are allowed", n, what, max)
	return false
}

// countRest counts the elements after the current one of the array being read. It
// scans the bytes rather than decoding tokens, which would allocate every string of
// what may be megabytes of elements. inside tells whether the current element is a
// container just opened.
func (s *scan) countRest(inside bool) int {
	n, depth, inString := 0, 0, false
	if inside {
		depth = 1
	}
	rest := s.data[min(int(s.dec.InputOffset()), len(s.data)):]
	for i := 0; i < len(rest); i++ {
		b := rest[i]
		switch {
		case inString:
			if b == '\\' {
				i++ // the escaped byte cannot end the string
			} else if b == '"' {
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			depth++
		case b == '}' || b == ']':
			if depth == 0 {
				return n // the array closed
			}
			depth--
		case b == ',' && depth == 0:
			n++
		}
	}
	return n // cut short: count what there is
}

// key checks one key of the top object: the bound on keys and duplicates.
func (s *scan) key(k string) {
	top := s.top()
	top.isKey = false
	top.key = k
	top.n++
	if len(k) > maxKeyLen {
		s.refuse(s.at(len(s.stack)-1), "a key of %d bytes; keys are at most %d bytes (the longest of a provision.json has 18)", len(k), maxKeyLen)
		return
	}
	if top.n > maxKeys {
		s.refuse(s.at(len(s.stack)-1), "more than %d keys in one object; the largest object of a provision.json has 12", maxKeys)
		return
	}
	line := s.lineAt(s.dec.InputOffset())
	first, dup := top.line[k]
	if !dup {
		top.line[k] = line
		return
	}
	if len(s.dups) >= maxProblems {
		s.moreDups++
		return
	}
	s.dups = append(s.dups, Problem{s.pointer(), fmt.Sprintf("duplicate key %q: first at line %d, again at line %d", k, first, line)})
}

// lineAt returns the line of the byte at off. Offsets only grow while the document is
// read, so the newlines are counted once in all.
func (s *scan) lineAt(off int64) int {
	end := min(int(off), len(s.data))
	if end > s.lineOff {
		s.line += bytes.Count(s.data[s.lineOff:end], []byte{'\n'})
		s.lineOff = end
	}
	return s.line
}

func (s *scan) refuse(ptr, format string, args ...any) {
	s.refusal = &Problem{ptr, fmt.Sprintf(format, args...)}
}

// pointer locates the value being read: the current element of the top array, or the
// value of the current key of the top object.
func (s *scan) pointer() string { return s.at(len(s.stack)) }

// at builds the pointer of the value that is open (or being read) at depth d: the
// current values of the first d containers of the stack.
func (s *scan) at(d int) string {
	var b strings.Builder
	for _, c := range s.stack[:d] {
		b.WriteByte('/')
		if c.array {
			b.WriteString(strconv.Itoa(c.n - 1))
		} else {
			b.WriteString(escapeToken(c.key))
		}
	}
	return b.String()
}
