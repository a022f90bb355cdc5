package specs

import "time"

// Defaults of the original design.
const (
	DefaultDatabase         = "default"
	DefaultKeyColumn        = "id"
	DefaultSettleDelay      = time.Second
	DefaultBatchDuration    = 2 * time.Second
	DefaultInitialBatchRows = 1_000_000
)

// ApplyDefaults fills in the fields left out of the spec. It is idempotent.
// A field written explicitly as zero in YAML or JSON ("settle_delay: 0s")
// keeps its zero value; for a spec built in code, zero means "not set".
func (s *Spec) ApplyDefaults() {
	set := s.Origin.fields.has
	if s.Database == "" {
		s.Database = DefaultDatabase
	}
	if s.TargetTable == "" && s.Name != "" {
		s.TargetTable = s.Name + "_data"
	}
	if s.DistributedTable == "" && s.Name != "" {
		s.DistributedTable = s.Name + "_dist"
	}
	b := &s.Backfill
	if b.KeyColumn == "" {
		b.KeyColumn = DefaultKeyColumn
	}
	if b.Optimize == nil {
		b.Optimize = new(true)
	}
	if b.SettleDelay.Duration == 0 && !set("backfill.settle_delay") {
		b.SettleDelay.Duration = DefaultSettleDelay
	}
	if b.BatchDuration.Duration == 0 && !set("backfill.batch_duration") {
		b.BatchDuration.Duration = DefaultBatchDuration
	}
	if b.InitialBatchRows == 0 && !set("backfill.initial_batch_rows") {
		b.InitialBatchRows = DefaultInitialBatchRows
	}
}

// OptimizeAfterBackfill reports whether OPTIMIZE TABLE target FINAL runs
// after the backfill: true unless backfill.optimize is false, and false
// when there is no backfill at all.
func (s *Spec) OptimizeAfterBackfill() bool {
	if s.Backfill.Disabled {
		return false
	}
	return s.Backfill.Optimize == nil || *s.Backfill.Optimize
}

// ProbeFirstBatch reports whether the first batch of a key-range backfill
// is sized from a read-only probe of the query's pace (see
// executor/probe.go): when initial_batch_rows is the default. Any other
// value is the first batch's key range, as written. The test is on the value,
// not on whether the field was written, because a spec stored by the REST API
// or in a job is stored with its defaults filled in.
func (b Backfill) ProbeFirstBatch() bool {
	return b.InitialBatchRows == DefaultInitialBatchRows
}
