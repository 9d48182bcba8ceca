package schema

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Document is the embedded JSON Schema of provision.json (draft 2020-12). It is exported
// so that tools and documentation can publish exactly what the loader enforces.
//
//go:embed provision.schema.json
var Document []byte

// maxDocument bounds what Load reads: a provision.json is a few KiB; a multi-megabyte body
// is a wrong URL or an attack, not a spec.
const maxDocument = 4 << 20

// Problem is one finding about a document, located by its JSON pointer (RFC 6901).
type Problem struct {
	Pointer string `json:"pointer"`
	Message string `json:"message"`
}

// String renders "pointer: message"; the document root is shown as "/".
func (p Problem) String() string {
	ptr := p.Pointer
	if ptr == "" {
		ptr = "/"
	}
	return ptr + ": " + p.Message
}

// ValidationError holds the errors found in a document, in document order: every one,
// or when there are more than a hundred, the first hundred and a last problem at the
// document root saying how many more there are.
type ValidationError struct {
	Problems []Problem
}

// Error lists every problem, one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "invalid provision.json:\n" + strings.Join(lines, "\n")
}

// ErrInvalid is matched (errors.Is) by every *ValidationError, so callers can map a bad
// document to its exit code without caring about the details.
var ErrInvalid = errors.New("invalid provision.json")

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Document))
	if err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	const url = "provision.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	return c.Compile(url)
})

// Load reads, schema-checks and semantically validates a provision.json. It returns the
// spec and its warnings, or a *ValidationError carrying every error found (schema and
// semantic alike, each with its JSON pointer; past a hundred, the first hundred and
// their count). Warnings are returned even on failure. A document beyond the bounds
// (maxImages and the others) gets only that one error, found in one cheap pass over it,
// and a key repeated in one object is an error at its pointer.
func Load(r io.Reader) (*Spec, []Problem, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxDocument+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading provision.json: %w", err)
	}
	if len(data) > maxDocument {
		return nil, nil, &ValidationError{Problems: []Problem{{"", fmt.Sprintf("document is larger than %d bytes", maxDocument)}}}
	}
	sch, err := compiled()
	if err != nil {
		return nil, nil, err
	}
	// The bounds come first: beyond them nothing else runs, since the validator's cost
	// grows with what it is given.
	pre := prescan(data)
	if pre.refusal != nil {
		return nil, nil, &ValidationError{Problems: []Problem{*pre.refusal}}
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, nil, &ValidationError{Problems: []Problem{{"", "not valid JSON: " + jsonError(data, err)}}}
	}
	var errs []Problem
	if verr := sch.Validate(inst); verr != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(verr, &ve) {
			return nil, nil, fmt.Errorf("validating provision.json: %w", verr)
		}
		var wrongType [][]string
		errs, wrongType = schemaProblems(ve)
		if len(wrongType) > 0 {
			// Drop the values of the wrong JSON type so the rest still decodes.
			prune(inst, wrongType)
			if data, err = json.Marshal(inst); err != nil {
				return nil, nil, fmt.Errorf("re-encoding provision.json: %w", err)
			}
		}
	}

	// Semantic checks run even when the schema failed, so one pass shows everything; a
	// document whose shape is too broken to decode gets the schema's findings only.
	var spec Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		if len(errs) == 0 {
			errs = append(errs, Problem{"", "cannot decode: " + err.Error()})
		}
		return nil, nil, &ValidationError{Problems: report(collect(errs, pre.dups, nil), pre.moreDups, "errors")}
	}
	c := &checker{spec: &spec}
	c.run()
	warns := report(c.warns, 0, "warnings")
	if all := collect(errs, pre.dups, c.errs); len(all) > 0 {
		return nil, warns, &ValidationError{Problems: report(all, pre.moreDups, "errors")}
	}
	return &spec, warns, nil
}

// jsonError turns a decoder error into "line L, column C: msg".
func jsonError(data []byte, err error) string {
	var se *json.SyntaxError
	off := int64(-1)
	if errors.As(err, &se) {
		off = se.Offset
	} else {
		// jsonschema.UnmarshalJSON wraps its own errors; re-run the stdlib decoder to
		// get an offset for the same fault.
		var v any
		if e2 := json.Unmarshal(data, &v); errors.As(e2, &se) {
			off, err = se.Offset, e2
		}
	}
	if off < 0 {
		return err.Error()
	}
	if off > 0 && strings.HasPrefix(se.Error(), "invalid character") {
		off-- // the offset counts the offending byte: point at it, not past it
	}
	line, col := 1, 1
	for _, b := range data[:min(int(off), len(data))] {
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("line %d, column %d: %s", line, col, se.Error())
}
