package schema

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// maxMessage bounds one reported message, in bytes. Messages quote the values they are
// about, and a value may be megabytes long.
const maxMessage = 1 << 10

// collect gathers the findings of one document in document order: the schema's, the
// duplicate keys, and the semantic findings at pointers the schema did not report (the
// same fault seen twice, a size that fails the schema's pattern and the size grammar,
// is reported once, the schema's way). The semantic checks saw the last value of each
// duplicate key, as every JSON decoder does; their findings there are kept.
func collect(schemaErrs, dups []Problem, semantic []finding) []finding {
	seen := make(map[string]bool, len(schemaErrs))
	out := make([]finding, 0, len(dups)+len(schemaErrs)+len(semantic))
	for _, p := range dups {
		out = append(out, found(p))
	}
	for _, p := range schemaErrs {
		seen[p.Pointer] = true
		out = append(out, found(p))
	}
	for _, f := range semantic {
		if !seen[f.ptr] {
			out = append(out, f)
		}
	}
	sortFindings(out)
	return out
}

// report formats the first maxProblems findings, already in document order, and says
// at the document root how many more there are (more counts those left out before), so
// a document with thousands of faults gives a readable answer of bounded size. Only
// what is reported is formatted.
func report(fs []finding, more int, what string) []Problem {
	if len(fs) > maxProblems {
		more += len(fs) - maxProblems
		fs = fs[:maxProblems]
	}
	if len(fs) == 0 && more == 0 {
		return nil
	}
	out := make([]Problem, 0, len(fs)+1)
	for _, f := range fs {
		p := f.problem()
		p.Message = shorten(p.Message)
		out = append(out, p)
	}
	if more > 0 {
		out = append(out, Problem{"", fmt.Sprintf("%d more %s are not listed (only the first %d are)", more, what, maxProblems)})
	}
	return out
}

// shorten cuts the middle out of a message longer than maxMessage, keeping its start
// and its end, which say what is wrong.
func shorten(msg string) string {
	if len(msg) <= maxMessage {
		return msg
	}
	const mark = " … "
	keep := (maxMessage - len(mark)) / 2
	head, tail := keep, len(msg)-keep
	for head > 0 && !utf8.RuneStart(msg[head]) {
		head--
	}
	for tail < len(msg) && !utf8.RuneStart(msg[tail]) {
		tail++
	}
	return msg[:head] + mark + msg[tail:]
}

// sortProblems orders problems as they appear in the document (array indexes compared
// as numbers), keeping the order of problems at the same pointer.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool { return pointerLess(ps[i].Pointer, ps[j].Pointer) })
}

// sortFindings is sortProblems for findings.
func sortFindings(fs []finding) {
	sort.SliceStable(fs, func(i, j int) bool { return pointerLess(fs[i].ptr, fs[j].ptr) })
}

// pointerLess compares two pointers token by token without allocating: the sort of
// every finding calls it n log n times.
func pointerLess(a, b string) bool {
	for a != "" && b != "" {
		var at, bt string
		at, a = nextToken(a)
		bt, b = nextToken(b)
		if at == bt {
			continue
		}
		if isIndex(at) && isIndex(bt) && len(at) != len(bt) {
			// Array indexes compare as numbers: without leading zeros (RFC 6901), the
			// longer one is larger, and equal lengths compare as strings do.
			return len(at) < len(bt)
		}
		return at < bt
	}
	return a == "" && b != ""
}

// nextToken splits "/tok/rest" into "tok" and "/rest".
func nextToken(p string) (tok, rest string) {
	p = strings.TrimPrefix(p, "/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i], p[i:]
	}
	return p, ""
}

func isIndex(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return false
		}
	}
	return true
}
