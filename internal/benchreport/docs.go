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
			"shirath's backfill is timed from its first backfill line to its OPTIMIZE line.",
		figures: map[string]figure{
			"parallel/slowest-shard":   {what: "both shards at once (apply's default)", baseline: "the slowest shard's single `INSERT ... SELECT` over its own rows, run alone (the statement of a batch covering every key)", target: "under 1.3x"},
			"sequential/slowest-shard": {what: "one shard after the other (`-parallelism=1`)", baseline: "the slowest shard's single INSERT, run alone"},
			"parallel/shards-at-once":  {what: "both shards at once", baseline: "both shards' single INSERTs run at the same time: what the cores allow"},
			"slowest-shard-s":          {what: "the slowest shard's single INSERT"},
			"shards-at-once-s":         {what: "both shards' single INSERTs at once"},
			"parallel-s":               {what: "shirath, shards at once"},
			"sequential-s":             {what: "shirath, one shard after the other"},
		},
	},
	"BenchmarkManyMVs": {
		text: "Issue 11, point 2. 18.16 single node, 1,000,000-row source; 20 new MVs (the same rollup under 20 names, so each is the largest) " +
			"in one `shirath apply`, whole commands timed (each MV: 1 s rate sample, fence, 1 s settle delay, backfill, OPTIMIZE).",
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
}
