package main

// figure says what a metric is, what it is compared with, and the target
// it must meet, where the issue that asked for it set one.
type figure struct{ what, baseline, target string }

type benchDoc struct {
	text    string
	figures map[string]figure
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
			"shirath's backfill is timed from its first backfill line to its OPTIMIZE line (OPTIMIZE not counted). " +
			"The target's baseline is both shards' single `INSERT ... SELECT`s run at the same time: the team's rule on this 2-core machine " +
			"is to compare parallel work with its baseline statements run at the same time. Four ClickHouse servers, ZooKeeper and PostgreSQL " +
			"share 2 cores, so two shards' statements at once take longer than one alone (`shards-at-once-s` against `slowest-shard-s`); " +
			"shirath's shard streams cannot beat the same statements at once, and comparing them with one statement alone " +
			"(`parallel/slowest-shard`) measures the cores as much as shirath.",
		figures: map[string]figure{
			"parallel/shards-at-once":  {what: "both shards at once (apply's default)", baseline: "both shards' single INSERTs run at the same time (the statement of a batch covering every key, on each shard)", target: "under 1.3x"},
			"parallel/slowest-shard":   {what: "both shards at once", baseline: "the slowest shard's single `INSERT ... SELECT` over its own rows, run alone"},
			"sequential/slowest-shard": {what: "one shard after the other (`-parallelism=1`)", baseline: "the slowest shard's single INSERT, run alone"},
			"slowest-shard-s":          {what: "the slowest shard's single INSERT"},
			"shards-at-once-s":         {what: "both shards' single INSERTs at once"},
			"parallel-s":               {what: "shirath, shards at once"},
			"sequential-s":             {what: "shirath, one shard after the other"},
			"parallel-batches":         {what: "batches shirath ran, both shards together (shards at once)"},
		},
	},
	"BenchmarkManyMVs": {
		text: "Issue 11, point 2. 18.16 single node, 1,000,000-row source; 20 new MVs (the same rollup under 20 names, so each is the largest) " +
			"in one `shirath apply`, whole commands timed. Each MV takes its own lock, fence, backfill and OPTIMIZE; the MVs of one source " +
			"share the insert-rate sample (1 s, measured once and reused for 30 s) and the settle delay (it runs from the first moment an MV " +
			"of the apply saw the source past a fence at or above the MV's own): see README, Parallelism.",
		figures: map[string]figure{
			"20mvs-p4/one":  {what: "20 MVs, default `-parallelism` (4)", baseline: "`shirath apply` of one of them alone", target: "under 3x"},
			"20mvs-p20/one": {what: "20 MVs, `-parallelism=20`", baseline: "`shirath apply` of one of them alone", target: "under 3x"},
			"one-s":         {what: "one MV alone"},
			"20mvs-p4-s":    {what: "20 MVs, 4 at once"},
			"20mvs-p20-s":   {what: "20 MVs, 20 at once"},
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
	"BenchmarkScale": {
		text: "Issue 11, points 3 and 5. 18.16 single node, sources of 5M, 20M and 80M rows (1,000 categories), `sorted` by the key " +
			"(`ORDER BY id`: adaptive key-range batches) and `unsorted` (`ORDER BY (category, id)`: one server-side pass), filled once per " +
			"test binary with `numbers()` and dropped at its end. Each iteration runs, side by side on each source, the single " +
			"`INSERT ... SELECT ... GROUP BY` over the whole source (the statement) and `shirath apply` of the same rollup; shirath's " +
			"backfill is timed from its first backfill line to its OPTIMIZE line (batches, their counts, the progress writes). " +
			"Both targets are checked against the source's aggregate.",
		figures: scaleFigures(),
	},
	"BenchmarkDaemon": {
		text: "Issue 11, point 5. 18.16 single node. 200 MVs over a 1,000-row source are applied, then `shirath serve --workers 5 --resync 1s " +
			"--scan-interval 250ms` runs on their specs plus 5 new MVs over a 10,000,000-row source (batches of at most 250,000 keys). " +
			"While those 5 backfill, `GET /api/mv/{name}` is sent at 200 requests/s (open loop, spread over the 205 MVs); the latency of " +
			"each request sent while at least one of them was backfilling or optimizing (`shirath_mv_jobs` of `/metrics`) is kept " +
			"(every request must answer 200). Then the daemon reconciles on until it has done an hour's worth of reconciles at the " +
			"default resync (200 MVs every 5 minutes: 2,400) or for 5 minutes, whichever comes first, " +
			"with resync at 1 s instead of 5 minutes and the scan at 250 ms instead of 10 s; its RSS (`/proc/PID/status` VmRSS) and " +
			"goroutines (`go_goroutines`) are sampled every 5 s, and every sample is in the benchmark's log. The 5 targets must be exact.",
		figures: map[string]figure{
			"get-p50-ms":            {what: "`GET /api/mv/{name}` latency, median, ms"},
			"get-p99-ms":            {what: "`GET /api/mv/{name}` latency, 99th percentile, ms", target: "under 50"},
			"gets-during-backfills": {what: "requests sent while a backfill ran"},
			"backfills-at-once":     {what: "the most of the 5 backfilling at once (seen by polling the API every 200 ms)"},
			"reconciles":            {what: "reconciles done in the simulation (it ends at 2,400 or after 5 minutes)", baseline: "an hour of the default resync: 2,400"},
			"simulated-minutes":     {what: "minutes of the default resync (200 MVs every 5 minutes) those reconciles stand for", target: "60"},
			"simulation-wall-s":     {what: "wall time of the simulation"},
			"rss-first-MB":          {what: "daemon RSS at the first sample (after the backfills), MB"},
			"rss-last-MB":           {what: "daemon RSS at the last sample, MB"},
			"rss-max-MB":            {what: "daemon RSS, largest sample, MB"},
			"rss-last/first":        {what: "RSS at the end of the simulated hour", baseline: "RSS at its start", target: "flat"},
			"goroutines-first":      {what: "daemon goroutines at the first sample"},
			"goroutines-last":       {what: "daemon goroutines at the last sample", baseline: "the first sample", target: "flat"},
		},
	},
}

// scaleFigures describes BenchmarkScale's metrics, per order and size.
func scaleFigures() map[string]figure {
	out := map[string]figure{}
	for _, order := range []string{"sorted", "unsorted"} {
		for _, size := range []string{"5M", "20M", "80M"} {
			k := order + "-" + size
			target := ""
			if size != "5M" {
				target = "0.8x or more"
			}
			out[k+"-throughput/statement"] = figure{what: "shirath's throughput, " + order + " " + size, baseline: "the single statement's, in the same iteration", target: target}
			out[k+"-ns-per-row"] = figure{what: "shirath's backfill time per source row, ns"}
			out[k+"-statement-s"] = figure{what: "the single statement"}
			out[k+"-backfill-s"] = figure{what: "shirath's backfill"}
			out[k+"-apply-s"] = figure{what: "the whole `shirath apply`"}
		}
		out[order+"-cost-spread/min"] = figure{what: "shirath's cost per row, " + order + ": largest of the three sizes", baseline: "the smallest", target: "under 1.3x"}
		out[order+"-80M-apply-peak-rss-MB"] = figure{what: "peak RSS of `shirath apply` on the 80M source (getrusage ru_maxrss), MB", target: "under 64"}
	}
	return out
}

// change is an optimisation made for a figure: the figure's median before
// it, measured as before says, and this report's median after it.
type change struct {
	what, bench, figure, before, source string
}

// changes are the optimisations of issue 11 with the figures they moved.
// The before figures come from main's BENCHMARKS.md at commit 8eb9efc
// (make bench of 2026-12-02, -count 3, the same machine, another load).
var changes = []change{
	{
		what:  "MVs of one source share the insert-rate sample (1 s) and the settle delay (1 s) within an apply",
		bench: "BenchmarkManyMVs", figure: "20mvs-p4/one", before: "5.66x", source: "main 8eb9efc",
	},
	{
		what:  "(the same)",
		bench: "BenchmarkManyMVs", figure: "20mvs-p20/one", before: "2.78x", source: "main 8eb9efc",
	},
	{
		what: "Shard streams: a last batch takes the rest when the previous batch's pace says it fits in 1.5x `batch_duration` " +
			"(or the rest is under half a batch), and each batch's range is counted while the batch runs",
		bench: "BenchmarkClusterShards", figure: "parallel/shards-at-once", before: "1.65x", source: "main 8eb9efc",
	},
	{
		what:  "(the same)",
		bench: "BenchmarkClusterShards", figure: "parallel/slowest-shard", before: "2.55x", source: "main 8eb9efc",
	},
	{
		what:  "(the same, and max(key) read from the last largest key: the sorted 5M source)",
		bench: "BenchmarkBackfillSorted", figure: "adaptive/baseline", before: "4.94x", source: "main 8eb9efc",
	},
	{
		what:  "(the same)",
		bench: "BenchmarkBackfillSorted", figure: "apply-s", before: "5.30 s", source: "main 8eb9efc",
	},
	{
		what: "The daemon reuses the spec directory's load (at most 1 s) instead of parsing every spec file on each GET; " +
			"before, BenchmarkDaemon's first run (killed) had the daemon at 1,683 goroutines and 123 MB RSS under the GET load",
		bench: "BenchmarkDaemon", figure: "get-p99-ms",
		before: "12,059, 13,140 and 19,338 ms for 3 GETs by curl during that run (`/api/mv/x.mv_001`: no such MV, the same reads)", source: "commit a0ca0df, load average about 70",
	},
}
