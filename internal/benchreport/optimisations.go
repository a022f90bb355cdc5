package main

import (
	"fmt"
	"io"
	"strings"
)

// optimisation is one of shirath's speed-ups with the two figures of the
// same run that show what it changed: the work done without it and with it,
// both measured side by side in each iteration.
type optimisation struct {
	name, bench   string
	without, with string // metric units (seconds): the same work both ways
	how           string // what "without" is
}

// optimisations are listed in the order they were made. Units with NM stand
// for every source size measured.
var optimisations = []optimisation{
	{"Adaptive batches (toward `batch_duration`, 4x per batch at most)", "BenchmarkBackfillSorted", "fixed10k-s", "adaptive-s",
		"the original design's 10,000-key batches, sent back to back (without shirath's bookkeeping)"},
	{"One pass over a source not sorted by the key", "BenchmarkBackfillUnsorted", "batches20-s", "single-pass-s",
		"20 key-range batches, each reading the whole source"},
	{"Shards backfilled at once (issue 11, point 1)", "BenchmarkClusterShards", "sequential-s", "parallel-s",
		"one shard after the other (`-parallelism=1`)"},
	{"MVs applied at once (issue 11, point 2; with the shared rate sample and settle delay)", "BenchmarkManyMVs", "20mvs-p1-s", "20mvs-p4-s",
		"20 MVs one after the other (`-parallelism=1`), against the default 4 at once"},
	{"First batch sized by a pace probe (issue 11, point 3)", "BenchmarkScale", "sorted-NM-fixedfirst-s", "sorted-NM-shirath-s",
		"a fixed first batch of 1,048,576 keys (`initial_batch_rows: 1048576`), about the 1M keys of the default before the probe"},
}

// writeOptimisations writes a table of what each optimisation changed, from
// the medians of the runs: a row per optimisation, server and source size
// found in them.
func writeOptimisations(w io.Writer, runs []*samples) {
	by := map[string]*samples{}
	for _, s := range runs {
		by[s.name] = s
	}
	var rows []string
	for _, o := range optimisations {
		s := by[o.bench]
		if s == nil {
			continue
		}
		for _, pair := range matchingPairs(s, o.without, o.with) {
			without, with := median(s.values[pair[0]]), median(s.values[pair[1]])
			if with <= 0 {
				continue
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %s: `%s` %.2f s | `%s` %.2f s | %.2fx |",
				o.name, o.bench, o.how, pair[0], without, pair[1], with, without/with))
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## What each optimisation changed\n\n"+
		"Each row compares two ways of doing the same work, measured side by side in the same iterations (medians): "+
		"without the optimisation and with it. Speed-up: the time without over the time with.\n\n"+
		"| optimisation | benchmark | without | with | speed-up |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintln(w, r)
	}
	fmt.Fprintf(w, "\nNot separated by a figure: the whole-rest last batch; the shared rate sample, settle delay and "+
		"sorting-key check of the MVs of one apply; the pace probe's fixed cost taken off (timed over an empty key range) "+
		"and the orphan-part check left out of a backfill that had no batch in doubt, which together took BenchmarkClusterShards "+
		"from two batches on a shard and about 100 ms after the last batch to one batch and 5 ms "+
		"(all inside the figures above; see README, Benchmarks, and executor/probe.go, executor/orphans.go).\n")
}

// matchingPairs finds the metrics of s named like without and with, server
// prefix and source size (NM) included, as pairs of the same server and size.
func matchingPairs(s *samples, without, with string) [][2]string {
	var out [][2]string
	for _, unit := range s.order {
		server, rest := "", unit
		if m := serverPrefix.FindStringSubmatch(unit); m != nil {
			server, rest = "ch"+m[1]+"-", m[2]
		}
		size := ""
		if m := sizeInUnit.FindStringSubmatchIndex(rest); m != nil {
			size = rest[m[2]:m[3]]
			rest = rest[:m[0]] + "-NM-" + rest[m[1]:]
		}
		if rest != without {
			continue
		}
		w := server + strings.Replace(with, "-NM-", "-"+size+"M-", 1)
		if _, ok := s.values[w]; ok {
			out = append(out, [2]string{unit, w})
		}
	}
	return out
}
