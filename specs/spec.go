// Package specs defines the materialized view spec document, loads it from
// YAML files or JSON bodies, fills in defaults and validates it.
//
// Every text of a spec that reaches generated SQL is checked here first:
// names are plain identifiers, column types and engines are parsed with
// small grammars of their own (ParseType, ParseEngine) that admit nothing
// but names, numbers, quoted strings and parentheses, order_by and
// partition_by entries are single expressions over declared columns, and
// select_query is one plain SELECT reading FROM {source_table} directly,
// without subqueries, JOINs, table functions or clauses that make no
// sense for a view (LIMIT, ORDER BY, HAVING, SETTINGS, FORMAT, INTO
// OUTFILE, PREWHERE, FINAL, SAMPLE, WITH). Its outputs match the columns
// by name. Errors carry file, line and column (field paths for JSON) and
// a hint, and a run reports all of them at once.
package specs

import "time"

// Spec is one desired materialized view. The same document is read from YAML
// files and from the REST API's JSON bodies; field names follow the original
// design.
type Spec struct {
	Name             string   `yaml:"name" json:"name"`
	SourceTable      string   `yaml:"source_table" json:"source_table"`
	TargetTable      string   `yaml:"target_table,omitempty" json:"target_table,omitempty"`
	DistributedTable string   `yaml:"distributed_table,omitempty" json:"distributed_table,omitempty"`
	Engine           string   `yaml:"engine" json:"engine"`
	OrderBy          []string `yaml:"order_by" json:"order_by"`
	PartitionBy      string   `yaml:"partition_by,omitempty" json:"partition_by,omitempty"`
	Columns          []Column `yaml:"columns" json:"columns"`
	SelectQuery      string   `yaml:"select_query" json:"select_query"`
	// Cluster is empty for a single node, "auto" to detect the one real
	// cluster from system.clusters, or a cluster name.
	Cluster  string   `yaml:"cluster,omitempty" json:"cluster,omitempty"`
	Database string   `yaml:"database,omitempty" json:"database,omitempty"`
	Backfill Backfill `yaml:"backfill,omitempty" json:"backfill,omitempty"`
	// AllowMutableSource opts in to an MV over a ReplacingMergeTree,
	// CollapsingMergeTree or VersionedCollapsingMergeTree source, where every
	// update of a row reaches the MV as a new row.
	AllowMutableSource bool `yaml:"allow_mutable_source,omitempty" json:"allow_mutable_source,omitempty"`
	// PreventDestroy makes any plan that would drop or rebuild this MV fail,
	// as Terraform's lifecycle prevent_destroy does. It is recorded with the
	// job, so that it still protects the MV once its spec is removed.
	PreventDestroy bool `yaml:"prevent_destroy,omitempty" json:"prevent_destroy,omitempty"`
	// ChangeStrategy says how apply changes this MV once it is live:
	// "rebuild" (the default) builds the new version beside the old one and
	// switches readers at once; "modify_query" replaces the view's query in
	// place (servers with ALTER TABLE ... MODIFY QUERY, target unchanged),
	// leaving the rows already in the target as the old query made them.
	ChangeStrategy string `yaml:"change_strategy,omitempty" json:"change_strategy,omitempty"`
	// Refresh makes it a refreshable MV (servers with system.view_refreshes):
	// the query runs on a schedule over the whole source; no backfill.
	Refresh *Refresh `yaml:"refresh,omitempty" json:"refresh,omitempty"`

	// Origin says where the spec came from, for error messages.
	Origin Origin `yaml:"-" json:"-"`
}

// The change strategies (Spec.ChangeStrategy).
const (
	ChangeRebuild     = "rebuild"
	ChangeModifyQuery = "modify_query"
)

// Column is one column of the target table.
type Column struct {
	Name string `yaml:"name" json:"name"`
	Type string `yaml:"type" json:"type"`
}

// Backfill holds the options of the historical backfill.
type Backfill struct {
	// KeyColumn is the source column that orders inserts (default "id"):
	// an unsigned or signed integer that grows with every insert.
	KeyColumn string `yaml:"key_column,omitempty" json:"key_column,omitempty"`
	// Disabled skips the backfill: the MV then only sees new rows.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// BatchDuration is the wall time one batch aims for (default 2s); the
	// batch size adapts to it.
	BatchDuration Duration `yaml:"batch_duration,omitempty" json:"batch_duration,omitempty"`
	// InitialBatchRows is the key range of the first batch (default 1,000,000).
	InitialBatchRows uint64 `yaml:"initial_batch_rows,omitempty" json:"initial_batch_rows,omitempty"`
	// MaxBatchRows caps the key range of one batch (default 0: no cap).
	MaxBatchRows uint64 `yaml:"max_batch_rows,omitempty" json:"max_batch_rows,omitempty"`
	// Optimize runs OPTIMIZE TABLE target FINAL after the backfill
	// (default true, as in the original design).
	Optimize *bool `yaml:"optimize,omitempty" json:"optimize,omitempty"`
	// SettleDelay is waited after the source has passed the fence before the
	// last batch runs, for inserts that are still in flight (default 1s).
	SettleDelay Duration `yaml:"settle_delay,omitempty" json:"settle_delay,omitempty"`
}

// Origin is the place a spec was read from.
type Origin struct {
	File string // empty for an API body
	Line int

	// fields records where each field was written (nil for a spec built
	// in code), so that Validate can point at the offending line and
	// column, and ApplyDefaults can tell an explicit zero from an absent
	// field. A pointer keeps Origin comparable.
	fields *fieldIndex
}

// Duration is a time.Duration written as a Go duration string ("2s", "500ms").
type Duration struct{ time.Duration }
