package schema

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

var printer = message.NewPrinter(language.English)

// schemaProblems flattens the validator's error tree into one Problem per leaf, located
// at the offending value. Alternatives (anyOf) that failed on type alone are folded into
// one message, and unknown keys are reported at the key itself with a suggestion. It
// also returns the locations of values of the wrong JSON type, which Load prunes so that
// the rest of the document can still be decoded and checked.
func schemaProblems(ve *jsonschema.ValidationError) (problems []Problem, wrongType [][]string) {
	var out []Problem
	seen := map[Problem]bool{}
	add := func(p Problem) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if _, ok := e.ErrorKind.(*kind.AnyOf); ok {
			for _, p := range anyOfProblems(e) {
				add(p)
			}
			if anyOfTypeOnly(e) {
				wrongType = append(wrongType, e.InstanceLocation)
			}
			return
		}
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		if _, ok := e.ErrorKind.(*kind.Type); ok {
			wrongType = append(wrongType, e.InstanceLocation)
		}
		for _, p := range leafProblems(e) {
			add(p)
		}
	}
	walk(ve)
	sortProblems(out)
	return out, wrongType
}

// anyOfTypeOnly reports an anyOf that failed because no branch accepted the value's type.
func anyOfTypeOnly(e *jsonschema.ValidationError) bool {
	for _, c := range e.Causes {
		if _, ok := c.ErrorKind.(*kind.Type); !ok {
			return false
		}
	}
	return len(e.Causes) > 0
}

// prune deletes the value at each location from a decoded JSON tree.
func prune(doc any, locs [][]string) {
	for _, loc := range locs {
		if len(loc) == 0 {
			continue
		}
		parent := doc
		for _, tok := range loc[:len(loc)-1] {
			parent = child(parent, tok)
		}
		last := loc[len(loc)-1]
		switch p := parent.(type) {
		case map[string]any:
			delete(p, last)
		case []any:
			// Keep indexes stable: a null element decodes as a zero value.
			if i, err := strconv.Atoi(last); err == nil && i >= 0 && i < len(p) {
				p[i] = nil
			}
		}
	}
}

func child(v any, tok string) any {
	switch t := v.(type) {
	case map[string]any:
		return t[tok]
	case []any:
		if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(t) {
			return t[i]
		}
	}
	return nil
}

func leafProblems(e *jsonschema.ValidationError) []Problem {
	ptr := pointer(e.InstanceLocation)
	switch k := e.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		ps := make([]Problem, 0, len(k.Properties))
		for _, name := range k.Properties {
			ps = append(ps, Problem{ptr + "/" + escapeToken(name), unknownKey(name)})
		}
		return ps
	case *kind.Required:
		ps := make([]Problem, 0, len(k.Missing))
		for _, name := range k.Missing {
			ps = append(ps, Problem{ptr + "/" + escapeToken(name), "required key is missing"})
		}
		return ps
	}
	return []Problem{{ptr, e.ErrorKind.LocalizedString(printer)}}
}

// anyOfProblems explains a failed anyOf. Branches that failed only because the value had
// another JSON type are noise when some branch matched the type; when none did, the
// wanted types are listed once. Branches that all miss a required key become one
// "one of these keys is required".
func anyOfProblems(e *jsonschema.ValidationError) []Problem {
	var leaves []*jsonschema.ValidationError
	var collect func(*jsonschema.ValidationError)
	collect = func(x *jsonschema.ValidationError) {
		if len(x.Causes) == 0 {
			leaves = append(leaves, x)
			return
		}
		for _, c := range x.Causes {
			collect(c)
		}
	}
	for _, c := range e.Causes {
		collect(c)
	}
	ptr := pointer(e.InstanceLocation)
	var want, missing []string
	got := ""
	var rest []*jsonschema.ValidationError
	for _, l := range leaves {
		switch k := l.ErrorKind.(type) {
		case *kind.Type:
			got = k.Got
			want = append(want, k.Want...)
		case *kind.Required:
			missing = append(missing, k.Missing...)
		default:
			rest = append(rest, l)
		}
	}
	var out []Problem
	switch {
	case len(rest) > 0:
		for _, l := range rest {
			out = append(out, leafProblems(l)...)
		}
	case len(missing) > 0 && len(want) == 0:
		q := make([]string, len(missing))
		for i, m := range missing {
			q[i] = fmt.Sprintf("%q", m)
		}
		out = append(out, Problem{ptr, "one of the keys " + strings.Join(q, ", ") + " is required"})
	case len(want) > 0:
		out = append(out, Problem{ptr, fmt.Sprintf("got %s, want %s", got, strings.Join(want, " or "))})
	default:
		out = append(out, Problem{ptr, e.ErrorKind.LocalizedString(printer)})
	}
	return out
}

func unknownKey(name string) string {
	msg := fmt.Sprintf("unknown key %q", name)
	if s := suggest(name); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg
}

// knownKeys lists every property name the schema defines, for typo suggestions.
var knownKeys = sync.OnceValue(func() []string {
	var doc any
	if err := json.Unmarshal(Document, &doc); err != nil {
		return nil
	}
	set := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			if props, ok := t["properties"].(map[string]any); ok {
				for k := range props {
					set[k] = true
				}
			}
			for _, c := range t {
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	walk(doc)
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
})

// suggest returns the known key closest to name, if it is a plausible typo of it.
func suggest(name string) string {
	best, bestD := "", 3
	lower := strings.ToLower(name)
	for _, k := range knownKeys() {
		limit := 2
		if len(k) <= 4 {
			limit = 1
		}
		if k == name {
			continue // a known key in the wrong place: no typo to suggest
		}
		if abs(len(lower)-len(k)) > limit {
			continue // too far apart to be a typo; also keeps a long key from costing len²
		}
		if d := editDistance(lower, k); d <= limit && d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// pointer builds a JSON pointer from reference tokens.
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escapeToken(t))
	}
	return b.String()
}

var tokenEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// escapeToken escapes one reference token (RFC 6901 §3).
func escapeToken(t string) string {
	if !strings.ContainsAny(t, "~/") {
		return t
	}
	return tokenEscaper.Replace(t)
}

// Ptr joins a base pointer and further tokens, escaping each token.
func Ptr(base string, tokens ...any) string {
	var b strings.Builder
	b.WriteString(base)
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escapeToken(fmt.Sprint(t)))
	}
	return b.String()
}
