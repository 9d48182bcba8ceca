package engine

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// benchRow is one comparison of the benchmarks of make bench: an operation done by the
// provisioner and by what a user would otherwise run.
type benchRow struct {
	op, alt           string        // the operation and format; the alternative's command
	bytes             int64         // the bytes the rates count (uncompressed tar, or the image)
	ours, other       time.Duration // wall time of each side
	oursRSS, otherRSS int64         // peak RSS of each side, bytes; 0: not measured
}

// benchRows collects the rows of every benchmark in the test binary, so that TestMain
// prints them as one table once all have run.
var benchRows struct {
	sync.Mutex
	rows []benchRow
}

// recordBench adds a row to the table printed at the end.
func recordBench(r benchRow) {
	benchRows.Lock()
	defer benchRows.Unlock()
	benchRows.rows = append(benchRows.rows, r)
}

// printBenchTable writes the rows recorded so far as a Markdown table (nothing when no
// benchmark ran): MB/s of each side, their ratio (above 1: the provisioner is faster) and
// the peak RSS of each.
func printBenchTable(w io.Writer) {
	benchRows.Lock()
	defer benchRows.Unlock()
	if len(benchRows.rows) == 0 {
		return
	}
	fmt.Fprintln(w, "\n| operation | alternative | provisioner | alternative | ratio | provisioner peak RSS | alternative peak RSS |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range benchRows.rows {
		ours := float64(r.bytes) / 1e6 / r.ours.Seconds()
		other := float64(r.bytes) / 1e6 / r.other.Seconds()
		// A | inside a table cell, even in code, ends the cell unless escaped.
		fmt.Fprintf(w, "| %s | `%s` | %.0f MB/s | %.0f MB/s | %.2f | %s | %s |\n",
			r.op, strings.ReplaceAll(r.alt, "|", `\|`), ours, other, ours/other, mib(r.oursRSS), mib(r.otherRSS))
	}
}

func mib(n int64) string {
	if n <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}
