package main

import (
	"regexp"
	"strconv"
	"strings"
)

// figure says what a metric is, what it is compared with, and the target
// it must meet, where the issue that asked for it set one.
type figure struct{ what, baseline, target string }

type benchDoc struct {
	text    string
	figures map[string]figure
}

// serverPrefix names the server of a metric measured on a single node other
// than 18.16: "ch26.7-sorted-20M-ns-per-row".
var serverPrefix = regexp.MustCompile(`^ch(\d+\.\d+)-(.+)$`)

// sizeInUnit is the source size in a metric's name: "sorted-20M-ns-per-row".
var sizeInUnit = regexp.MustCompile(`-(\d+)M-`)

// figure describes a metric: its own entry, else the entry of its name with
// the size as N ("sorted-NM-ns-per-row"), where {rows} reads as the size.
func (d benchDoc) figure(unit string) figure {
	if m := serverPrefix.FindStringSubmatch(unit); m != nil {
		f := d.figure(m[2])
		if f.what != "" {
			f.what += ", on the ClickHouse " + m[1] + " node"
		}
		return f
	}
	if f, ok := d.figures[unit]; ok {
		return f
	}
	m := sizeInUnit.FindStringSubmatchIndex(unit)
	if m == nil {
		return figure{}
	}
	millions, _ := strconv.Atoi(unit[m[2]:m[3]])
	f := d.figures[unit[:m[0]]+"-NM-"+unit[m[1]:]]
	rows := commas(millions * 1_000_000)
	f.what = strings.ReplaceAll(f.what, "{rows}", rows)
	f.baseline = strings.ReplaceAll(f.baseline, "{rows}", rows)
	return f
}

func commas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// docs describes the benchmarks of internal/e2e; a benchmark or metric not
// listed here is still reported, without a description.
var docs = map[string]benchDoc{
	"BenchmarkBackfillSorted": {
		text: "18.16 single node, 5,000,000-row source sorted by `id`, 1,000 categories, one `SummingMergeTree` target.",
		figures: map[string]figure{
			"adaptive/baseline": {what: "shirath's backfill, default settings (first backfill line to OPTIMIZE line)", baseline: "one `INSERT ... SELECT ... GROUP BY` over the whole source"},
			"fixed10k/baseline": {what: "the original design's 10,000-key batches, sent back to back", baseline: "the same single INSERT"},
			"baseline-s":        {what: "the single INSERT", baseline: "-"},
			"adaptive-s":        {what: "shirath's backfill"},
			"apply-s":           {what: "the whole `shirath apply` (rate sample, fence, settle delay, backfill, OPTIMIZE)"},
			"fixed10k-s":        {what: "the 10,000-key batches"},
			"adaptive-batches":  {what: "batches shirath ran"},
		},
	},
	"BenchmarkBackfillUnsorted": {
		text: "18.16 single node, the same source sorted by `(category, id)`: shirath must backfill in one pass.",
		figures: map[string]figure{
			"single-pass/baseline": {what: "shirath's single pass", baseline: "one `INSERT ... SELECT ... GROUP BY` over the whole source"},
			"batches20/baseline":   {what: "20 key-range batches", baseline: "one `INSERT ... SELECT ... GROUP BY` over the whole source"},
			"baseline-s":           {what: "the single INSERT"},
			"single-pass-s":        {what: "shirath's single pass"},
			"apply-s":              {what: "the whole `shirath apply`"},
			"batches20-s":          {what: "20 key-range batches"},
		},
	},
	"BenchmarkClusterShards": {
		text: "Issue 11, point 1. 2x2 cluster (18.16), `ReplicatedMergeTree` source with 10,000,000 rows per shard, " +
			"a `ReplicatedSummingMergeTree` target (18.16: ordered one-thread batches with block deduplication). " +
			"shirath's backfill is timed from its first backfill line to its OPTIMIZE line.",
		figures: map[string]figure{
			"parallel/slowest-shard":   {what: "both shards at once (apply's default)", baseline: "the slowest shard's single `INSERT ... SELECT` over its own rows, run alone (the statement of a batch covering every key)", target: "under 1.3x"},
			"sequential/slowest-shard": {what: "one shard after the other (`-parallelism=1`)", baseline: "the slowest shard's single INSERT, run alone"},
			"parallel/shards-at-once":  {what: "both shards at once", baseline: "both shards' single INSERTs run at the same time (the slowest shard's statement with its parallel baseline beside it, as parallel work is compared here): what the cores allow", target: "under 1.3x"},
			"slowest-shard-s":          {what: "the slowest shard's single INSERT"},
			"shards-at-once-s":         {what: "both shards' single INSERTs at once"},
			"parallel-s":               {what: "shirath, shards at once"},
			"sequential-s":             {what: "shirath, one shard after the other"},
		},
	},
	"BenchmarkManyMVs": {
		text: "Issue 11, point 2. Each single node (18.16; `ch26.7-` figures: the 26.7 node), 1,000,000-row source; 20 new MVs (the same rollup under 20 names, so each is the largest) " +
			"in one `shirath apply`, whole commands timed (each MV: 1 s rate sample, fence, 1 s settle delay, backfill, OPTIMIZE).",
		figures: map[string]figure{
			"20mvs-p4/one":  {what: "20 MVs, default `-parallelism` (4)", baseline: "`shirath apply` of one of them alone", target: "under 3x"},
			"20mvs-p20/one": {what: "20 MVs, `-parallelism=20`", baseline: "`shirath apply` of one of them alone", target: "under 3x"},
			"20mvs-p1/one":  {what: "20 MVs one after the other (`-parallelism=1`)", baseline: "`shirath apply` of one of them alone"},
			"20mvs-p1-s":    {what: "20 MVs, one at a time"},
			"one-s":         {what: "one MV alone"},
			"20mvs-p4-s":    {what: "20 MVs, 4 at once"},
			"20mvs-p20-s":   {what: "20 MVs, 20 at once"},
		},
	},
	"BenchmarkScale": {
		text: "Issue 11, point 3. Each single node (18.16; `ch26.7-` figures: the 26.7 node), sources of 5M, 20M and 80M rows (1,000 categories), sorted by the key (`ORDER BY id`: key-range batches) " +
			"and not (`ORDER BY (category, id)`: one pass), one `SummingMergeTree` target. Throughputs are the single statement's time over the method's " +
			"(1x: as many rows a second as the statement; higher is better). shirath's backfill is timed from its first backfill line to its OPTIMIZE line. " +
			"`SHIRATH_BENCH_SCALE_MAX` caps the sizes.",
		figures: map[string]figure{
			"sorted-NM-shirath/statement":    {what: "shirath's throughput, {rows}-row source sorted by the key", baseline: "one `INSERT ... SELECT ... GROUP BY` over the whole source", target: "0.8x or more"},
			"unsorted-NM-shirath/statement":  {what: "shirath's throughput (one pass), {rows}-row source sorted by `(category, id)`", baseline: "one `INSERT ... SELECT ... GROUP BY` over the whole source", target: "0.8x or more"},
			"sorted-5M-shirath/statement":    {what: "shirath's throughput, 5,000,000-row source sorted by the key", baseline: "one `INSERT ... SELECT ... GROUP BY` over the whole source"},
			"unsorted-5M-shirath/statement":  {what: "shirath's throughput (one pass), 5,000,000-row source sorted by `(category, id)`", baseline: "one `INSERT ... SELECT ... GROUP BY` over the whole source"},
			"sorted-NM-filtered/statement":   {what: "throughput of the statement with shirath's key filter `id > 0 AND id <= F`: the floor of a fenced backfill, {rows} rows", baseline: "the statement without the filter"},
			"unsorted-NM-filtered/statement": {what: "throughput of the statement with the key filter, {rows} rows, unsorted source", baseline: "the statement without the filter"},
			"sorted-cost-max/min":            {what: "shirath's cost per row, sorted source: the largest over the smallest across the sizes", baseline: "-", target: "under 1.3x"},
			"unsorted-cost-max/min":          {what: "shirath's cost per row, unsorted source: the largest over the smallest across the sizes", baseline: "-", target: "under 1.3x"},
			"sorted-NM-ns-per-row":           {what: "shirath's backfill time per source row, {rows} rows, sorted"},
			"unsorted-NM-ns-per-row":         {what: "shirath's backfill time per source row, {rows} rows, unsorted"},
			"sorted-NM-statement-s":          {what: "the single statement, {rows} rows"},
			"unsorted-NM-statement-s":        {what: "the single statement, {rows} rows"},
			"sorted-NM-filtered-s":           {what: "the filtered statement, {rows} rows"},
			"unsorted-NM-filtered-s":         {what: "the filtered statement, {rows} rows"},
			"sorted-NM-shirath-s":            {what: "shirath's backfill, {rows} rows"},
			"unsorted-NM-shirath-s":          {what: "shirath's backfill (one pass), {rows} rows"},
			"sorted-NM-batches":              {what: "batches shirath ran, {rows} rows"},
			"sorted-NM-shirath/filtered":     {what: "shirath's throughput, {rows} rows, sorted", baseline: "the statement with the key filter (the floor of a fenced backfill)"},
			"unsorted-NM-shirath/filtered":   {what: "shirath's throughput (one pass), {rows} rows, unsorted", baseline: "the statement with the key filter (the floor of a fenced backfill)"},
			"sorted-NM-fixedfirst/statement": {what: "shirath with a fixed first batch of 1,048,576 keys (`initial_batch_rows: 1048576`: no pace probe), {rows} rows", baseline: "one `INSERT ... SELECT ... GROUP BY` over the whole source"},
			"sorted-NM-fixedfirst-s":         {what: "shirath's backfill with a fixed first batch, {rows} rows"},
			"sorted-NM-fixedfirst-batches":   {what: "batches with a fixed first batch, {rows} rows"},
		},
	},
	"BenchmarkFootprint": {
		text: "Issue 11, point 5. 18.16 single node. `apply` backfills the largest source of BenchmarkScale (80M rows sorted by the key unless capped); " +
			"the daemon (`shirath serve --workers 5`) backfills 5 new MVs of a 20M-row source while a client sends `GET /api/mv/{name}` at 200 requests a second " +
			"(open loop), then reconciles 200 up-to-date MVs 2,400 times (an hour of the default `--resync 5m`, run with `--resync 1s --workers 8`), " +
			"or as many times as 8 minutes allow: `daemon-reconciles` says how many.",
		figures: map[string]figure{
			"apply-peak-rss-MB":     {what: "peak resident set of `shirath apply` (rusage of the exited process) during the 80M-row backfill", baseline: "-", target: "under 64 MB"},
			"daemon-get-p50-ms":     {what: "`GET /api/mv/{name}` median latency while 5 backfills run", baseline: "-"},
			"daemon-get-p99-ms":     {what: "`GET /api/mv/{name}` 99th percentile latency while 5 backfills run", baseline: "-", target: "under 50 ms"},
			"daemon-gets":           {what: "GETs sent while a backfill ran"},
			"daemon-rss-last/first": {what: "the daemon's resident set after the simulated hour", baseline: "its resident set once each of the 200 MVs was reconciled once", target: "flat"},
			"daemon-rss-first-MB":   {what: "the daemon's resident set once each MV was reconciled once"},
			"daemon-rss-last-MB":    {what: "the daemon's resident set at the end"},
			"daemon-rss-peak-MB":    {what: "the daemon's peak resident set (VmHWM)"},
			"daemon-reconciles":     {what: "reconciles made (2,400: an hour of the default resync for 200 MVs)"},
		},
	},
	"BenchmarkPlan200": {
		text: "Issue 11, point 4. 2x2 cluster (18.16): `shirath plan` of 200 specs against the 200 MVs they created (no changes), " +
			"the whole command, median of 5 runs per sample. The statements sent to each node are counted (debug log) with 20 MVs and with 200: " +
			"the benchmark fails unless they are equal.",
		figures: map[string]figure{
			"plan200-s":       {what: "`shirath plan`, 200 MVs", baseline: "-", target: "under 1 s"},
			"statements/node": {what: "statements sent to the busiest node (the seed)", baseline: "the same count with 20 MVs (equal, or the benchmark fails)", target: "constant"},
		},
	},
}
