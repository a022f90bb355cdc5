package state

import (
	"encoding/json"
	"math"
	"time"
)

// Status is where a job (or one shard of its backfill) stands.
type Status string

// The statuses a job can have; the migrations' CHECK constraints hold the same set.
const (
	StatusPending        Status = "pending"
	StatusCreating       Status = "creating"
	StatusWaiting        Status = "waiting"
	StatusBackfilling    Status = "backfilling"
	StatusOptimizing     Status = "optimizing"
	StatusCompleted      Status = "completed"
	StatusFailed         Status = "failed"
	StatusPaused         Status = "paused"
	StatusNeedsAttention Status = "needs_attention"
)

// Statuses lists every known status, in lifecycle order.
var Statuses = []Status{
	StatusPending, StatusCreating, StatusWaiting, StatusBackfilling, StatusOptimizing,
	StatusCompleted, StatusFailed, StatusPaused, StatusNeedsAttention,
}

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	for _, k := range Statuses {
		if s == k {
			return true
		}
	}
	return false
}

// Terminal reports whether a job in this status stays there until someone
// acts (a new apply, a resume, an operator): the daemon does not pick it up
// on its own.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusNeedsAttention, StatusPaused:
		return true
	}
	return false
}

// Job is one managed materialized view: its spec, what was applied for it and
// how far its backfill is.
type Job struct {
	ID          int64
	Name        string
	Database    string
	SourceTable string
	TargetTable string
	Status      Status
	ClusterName string // "" when single node
	Nodes       []string
	// Deployment is the ClickHouse deployment the job was applied to
	// (planner.Connector.Deployments); "" for a job recorded before
	// deployments were, which the next apply claims.
	Deployment string

	CutoffID        *int64
	LastProcessedID *int64
	TotalRows       int64
	ProcessedRows   int64

	Config        json.RawMessage // the spec document
	SpecHash      string
	Applied       map[string]AppliedObject // object name -> what the executor applied
	FenceVerified bool

	// Version is the version of the MV that the objects, fence and progress
	// above describe; LiveVersion the one readers see. Version >
	// LiveVersion while a change builds a new version beside the live one.
	// Both are 1 for an MV never changed (0 in a Job built in code reads as 1).
	Version, LiveVersion int
	// PreviousConfig is the spec of the version replaced last (nil before
	// the first change); SwitchedAt when readers were switched to it.
	PreviousConfig json.RawMessage
	SwitchedAt     *time.Time
	// AdoptedAt is when shirath adopted the MV: it existed before shirath
	// managed it, and its job was recorded without DDL or backfill. nil for
	// an MV shirath created.
	AdoptedAt *time.Time
	// Reads is what the job's Version reads when its source is another
	// MV's target (a chain); nil otherwise, and for a job recorded before
	// it was kept (which reads version 1's names).
	Reads *Reads

	// VerifiedAt is when the last verify that found no difference ended;
	// LastVerify the summary of the last verify, passed or not. Only
	// RecordVerify writes them.
	VerifiedAt *time.Time
	LastVerify *VerifySummary

	ErrorMessage string
	InsertedAt   time.Time
	UpdatedAt    time.Time

	Shards []ShardProgress // loaded with the job, ordered by shard and replica
}

// Reads names the physical version of an upstream MV that a downstream MV
// reads: ClickHouse binds an MV to its source by name, and the upstream's
// readers' name becomes a Merge table (which receives no INSERT) once it has
// been changed, so a downstream view reads the physical objects.
type Reads struct {
	// Upstream is the upstream MV, database.name; Job and Version its job
	// and the version read (Job 0: not known, for a job recorded before).
	Upstream string `json:"upstream"`
	Job      int64  `json:"job"`
	Version  int    `json:"version"`
	// Table is the physical table the fence and the backfill read
	// ({target_table}__vN); View what the view reads: the same table, or
	// on servers where an MV's writes fire only the MVs reading its name
	// (18.16), the upstream MV's physical name.
	Table string `json:"table"`
	View  string `json:"view"`
	// Live is what the live version reads while a change builds another
	// (put back when the change is abandoned); nil otherwise.
	Live *Reads `json:"live,omitempty"`
}

// Building returns what a change's new version reads (r), remembering what
// the live version reads (live, the job's Reads before the change).
func (r *Reads) Building(live *Reads) *Reads {
	if r == nil {
		return nil
	}
	c := *r
	if live != nil {
		l := *live
		l.Live = nil
		c.Live = &l
	}
	return &c
}

// Switched is what the job reads once the version that r describes is live.
func (r *Reads) Switched() *Reads {
	if r == nil {
		return nil
	}
	c := *r
	c.Live = nil
	return &c
}

// Same reports whether two Reads name the same version of the same
// upstream; a Job of 0 (unknown) matches any job.
func (r *Reads) Same(o *Reads) bool {
	if r == nil || o == nil {
		return r == o
	}
	return r.Upstream == o.Upstream && r.Version == o.Version && r.Table == o.Table && r.View == o.View &&
		(r.Job == o.Job || r.Job == 0 || o.Job == 0)
}

// VerifySummary is what the job store keeps of a verify.
type VerifySummary struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Version is the version of the MV that was verified.
	Version     int    `json:"version"`
	Groups      uint64 `json:"groups"`
	Differences int    `json:"differences"`
}

// AppliedObject is what the executor applied for one object: the SQL shirath
// generated and the create query as the server printed it back. Drift is
// found by comparing the live server text with Server, a spec change by
// comparing freshly generated SQL with SQL; generated text is never compared
// with server text, whose formatting differs.
type AppliedObject struct {
	SQL    string `json:"sql"`
	Server string `json:"server"`
}

// ShardProgress is the backfill progress of one shard (one node on a cluster
// without replicas, shard 0 on a single node).
type ShardProgress struct {
	Shard         int
	Replica       string // the node address that runs or ran the batches
	Status        Status
	TotalRows     int64
	ProcessedRows int64

	LastProcessedID *int64
	// A batch [InflightLo, InflightHi] that was started and not yet
	// confirmed; nil when none.
	InflightLo, InflightHi *int64
	InflightQueryID        string
	// InDoubt is set once a batch of the shard ended without shirath seeing
	// its outcome (a later run found its in-flight marker), and never
	// cleared: only such a batch can leave a part on one replica that
	// ZooKeeper does not know (executor/orphans.go). Only MarkInDoubt
	// writes it; UpsertShard leaves it as it is.
	InDoubt bool

	ErrorMessage string
	UpdatedAt    time.Time
}

// Changing reports whether a change builds a new version beside the live
// one.
func (j *Job) Changing() bool { return j.Version > j.LiveVersion }

// DataNotVerified reports whether readers see the data of an adopted
// version that shirath did not write: version 1 of an adopted MV, until a
// verify passes after the adoption (or a change replaces that version with
// one shirath built and backfilled).
func (j *Job) DataNotVerified() bool {
	if j.AdoptedAt == nil || max(j.LiveVersion, 1) != 1 {
		return false
	}
	return j.VerifiedAt == nil || j.VerifiedAt.Before(*j.AdoptedAt)
}

// ProgressPercent is the backfill progress, rounded to 0.1: 100 once the job
// is completed (whatever the counts say), 0 while nothing is known to copy.
func (j *Job) ProgressPercent() float64 {
	return progressPercent(j.Status, j.ProcessedRows, j.TotalRows)
}

// ProgressPercent is the shard's backfill progress, computed as for a job.
func (p *ShardProgress) ProgressPercent() float64 {
	return progressPercent(p.Status, p.ProcessedRows, p.TotalRows)
}

func progressPercent(s Status, processed, total int64) float64 {
	if s == StatusCompleted {
		return 100
	}
	if total <= 0 {
		return 0
	}
	// total_rows is counted before the backfill starts and can fall short of
	// what the batches copy (merges, late rows below the cutoff): cap it so
	// that a running job never shows more than 100%.
	p := math.Round(float64(processed)/float64(total)*1000) / 10
	return math.Min(math.Max(p, 0), 100)
}

// JobView is the REST view of a job: fixed snake_case names, timestamps in
// RFC 3339 UTC, nulls for what is not known, never Go zero values. It is
// exported so that API clients decode the view with the type that writes it.
type JobView struct {
	ID              int64    `json:"id"`
	Name            string   `json:"name"`
	Database        string   `json:"database"`
	SourceTable     string   `json:"source_table"`
	TargetTable     string   `json:"target_table"`
	Status          Status   `json:"status"`
	ClusterName     *string  `json:"cluster_name"`
	Nodes           []string `json:"nodes"`
	CutoffID        *int64   `json:"cutoff_id"`
	TotalRows       int64    `json:"total_rows"`
	ProcessedRows   int64    `json:"processed_rows"`
	LastProcessedID *int64   `json:"last_processed_id"`
	ProgressPercent float64  `json:"progress_percent"`
	ErrorMessage    *string  `json:"error_message"`
	CreatedAt       string   `json:"created_at"`
	UpdatedAt       string   `json:"updated_at"`
	// Version is the version being built (or live), LiveVersion the one
	// readers see; SwitchedAt when readers were last switched by a change.
	Version     int     `json:"version"`
	LiveVersion int     `json:"live_version"`
	SwitchedAt  *string `json:"switched_at"`
	// VerifiedAt is when a verify last found no difference; LastVerify
	// the summary of the last verify.
	VerifiedAt *string        `json:"verified_at"`
	LastVerify *VerifySummary `json:"last_verify"`
	// AdoptedAt is when the MV was adopted (null for one shirath created);
	// DataNotVerified is true while readers see adopted data that no
	// verify has checked.
	AdoptedAt       *string     `json:"adopted_at"`
	DataNotVerified bool        `json:"data_not_verified"`
	Shards          []ShardView `json:"shards"`
}

// ShardView is the REST view of one shard's backfill progress.
type ShardView struct {
	Shard           int     `json:"shard"`
	Replica         string  `json:"replica"`
	Status          Status  `json:"status"`
	TotalRows       int64   `json:"total_rows"`
	ProcessedRows   int64   `json:"processed_rows"`
	LastProcessedID *int64  `json:"last_processed_id"`
	ProgressPercent float64 `json:"progress_percent"`
}

// MarshalJSON renders the job as the REST API shows it. It has a value
// receiver so that a Job renders the same whether marshalled by value or
// through a pointer.
func (j Job) MarshalJSON() ([]byte, error) {
	v := JobView{
		ID:              j.ID,
		Name:            j.Name,
		Database:        j.Database,
		SourceTable:     j.SourceTable,
		TargetTable:     j.TargetTable,
		Status:          j.Status,
		ClusterName:     nullString(j.ClusterName),
		Nodes:           j.Nodes,
		CutoffID:        j.CutoffID,
		TotalRows:       j.TotalRows,
		ProcessedRows:   j.ProcessedRows,
		LastProcessedID: j.LastProcessedID,
		ProgressPercent: j.ProgressPercent(),
		ErrorMessage:    nullString(j.ErrorMessage),
		CreatedAt:       rfc3339(j.InsertedAt),
		UpdatedAt:       rfc3339(j.UpdatedAt),
		Version:         max(j.Version, 1),
		LiveVersion:     max(j.LiveVersion, 1),
		Shards:          make([]ShardView, 0, len(j.Shards)),
		DataNotVerified: j.DataNotVerified(),
	}
	if j.AdoptedAt != nil {
		at := rfc3339(*j.AdoptedAt)
		v.AdoptedAt = &at
	}
	if j.SwitchedAt != nil {
		at := rfc3339(*j.SwitchedAt)
		v.SwitchedAt = &at
	}
	if j.VerifiedAt != nil {
		at := rfc3339(*j.VerifiedAt)
		v.VerifiedAt = &at
	}
	if j.LastVerify != nil {
		lv := *j.LastVerify
		lv.At = lv.At.UTC().Truncate(time.Second)
		v.LastVerify = &lv
	}
	if v.Nodes == nil {
		v.Nodes = []string{}
	}
	for i := range j.Shards {
		p := &j.Shards[i]
		v.Shards = append(v.Shards, ShardView{
			Shard:           p.Shard,
			Replica:         p.Replica,
			Status:          p.Status,
			TotalRows:       p.TotalRows,
			ProcessedRows:   p.ProcessedRows,
			LastProcessedID: p.LastProcessedID,
			ProgressPercent: p.ProgressPercent(),
		})
	}
	return json.Marshal(v)
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
