// Package verify compares an MV's target with its query run over the whole
// source, group by group, on the ClickHouse servers: only the groups that
// differ travel to shirath.
//
// The target is merged as its engine merges (see sqlgen.VerifyShape). On a
// cluster each shard is compared with its own source on one replica (every
// node when the source does not replicate): the MV of a shard only ever sees
// that shard's inserts, so a shard's target must equal its source's result,
// and a difference is named with its shard.
//
// Inserts never stop in production, and an INSERT writes the source first
// and the target a moment later: a check that reads both in between sees a
// difference that is not one. A check during which nothing was written
// (block numbers of both tables unchanged, no INSERT running before or
// after) is exact and final. Otherwise only the differing groups are checked
// again, after a pause, until each is settled: a group that matches in
// ClearRounds checks in a row was in flight; one that differs in
// ConfirmRounds checks in a row, by the same amount in all of them but one
// (or in a quiet check), is a difference. Rows in flight change from one
// check to the next, while a real difference stays what it is: a row too
// many in a sum stays a row too many whatever arrives meanwhile. A group
// that neither settles nor keeps one difference in MaxRounds checks is
// reported as an unstable difference. A real difference is missed only if
// rows in flight cancel it exactly, ClearRounds times in a row.
package verify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// ErrNotVerifiable is returned when an MV cannot be verified (yet): no
// completed backfill, an engine verify cannot merge, a node down.
var ErrNotVerifiable = errors.New("verify: cannot verify")

// Options tune the checks. Zero values take the defaults in brackets.
type Options struct {
	// Limit is how many differing groups a check returns [1000]; how many
	// differ in all is always counted.
	Limit int
	// ClearRounds: a group matching in that many checks in a row was in
	// flight [2].
	ClearRounds int
	// ConfirmRounds: a group differing in that many checks in a row, by the
	// same amount in all of them but one, is a difference [5].
	ConfirmRounds int
	// MaxRounds bounds the re-checks; a group still unsettled then is
	// reported as a difference (unstable) [40].
	MaxRounds int
	// Delay is the pause between re-checks, longer than an INSERT takes
	// from its source to its target [200ms].
	Delay time.Duration
}

func (o Options) withDefaults() Options {
	if o.Limit <= 0 {
		o.Limit = 1000
	}
	if o.ClearRounds <= 0 {
		o.ClearRounds = 2
	}
	if o.ConfirmRounds <= 0 {
		o.ConfirmRounds = 5
	}
	if o.MaxRounds <= 0 {
		o.MaxRounds = 40
	}
	if o.Delay <= 0 {
		o.Delay = 200 * time.Millisecond
	}
	return o
}

// Target is the live version of an MV: the spec readers see, with the
// physical names of its version.
type Target struct {
	Spec    *specs.Spec // physical names (sqlgen.Versioned)
	Name    string      // the MV's name
	Cluster string
	Version int
}

// TargetOf returns the live version of a job's MV. While a change builds a
// new version, the live one is the previous spec; an MV whose backfill has
// not completed cannot be verified.
func TargetOf(job *state.Job) (*Target, error) {
	cfg, live := job.Config, max(job.LiveVersion, 1)
	if job.Changing() {
		cfg = job.PreviousConfig
	} else if job.Status != state.StatusCompleted {
		return nil, fmt.Errorf("%w: %s.%s is %s: verify compares a target whose backfill has completed (see shirath status %s)", ErrNotVerifiable, job.Database, job.Name, job.Status, job.Name)
	}
	s, err := specs.ParseJSON(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: the spec of %s.%s's live version does not parse: %v", ErrNotVerifiable, job.Database, job.Name, err)
	}
	return &Target{Spec: sqlgen.Versioned(s, live), Name: job.Name, Cluster: job.ClusterName, Version: live}, nil
}

// Recorder records the outcome of a verify with the job (state.Store).
type Recorder interface {
	RecordVerify(ctx context.Context, id int64, sum state.VerifySummary) error
}

// VerifyJob verifies the live version of job's MV and records the outcome
// with the job: verified_at when it found no difference.
func (v *Verifier) VerifyJob(ctx context.Context, rec Recorder, job *state.Job) (*Report, error) {
	t, err := TargetOf(job)
	if err != nil {
		return nil, err
	}
	rep, err := v.Verify(ctx, t)
	if err != nil {
		return nil, err
	}
	sum := state.VerifySummary{At: time.Now(), OK: rep.OK, Version: rep.Version, Groups: rep.Groups, Differences: rep.Count()}
	if err := rec.RecordVerify(ctx, job.ID, sum); err != nil {
		return nil, err
	}
	return rep, nil
}

// The kinds of difference.
const (
	KindDiffers = "differs" // in both, with other values
	KindMissing = "missing" // in the query's result, not in the target
	KindExtra   = "extra"   // in the target only
)

// Difference is one group whose target differs from the query's result.
type Difference struct {
	Shard int    `json:"shard"`
	Node  string `json:"node"`
	Kind  string `json:"kind"`
	// Key holds the group's key values, in the order of Report.Keys.
	Key []string `json:"key"`
	// Target and Expected hold the merged values, in the order of
	// Report.Values; null on the side that lacks the group.
	Target   []string `json:"target"`
	Expected []string `json:"expected"`
	// Unstable: the group neither matched nor kept differing in
	// MaxRounds checks in a row.
	Unstable bool `json:"unstable,omitempty"`
}

// Scope is what was compared on one node: a shard, or the single node.
type Scope struct {
	Shard int    `json:"shard"`
	Node  string `json:"node"`
	// Groups is the number of groups of the target, merged.
	Groups      uint64 `json:"groups"`
	Differences int    `json:"differences"`
	// Unchecked counts the differing groups beyond Options.Limit in the
	// first check: they were counted, not re-checked, and are differences.
	Unchecked int `json:"unchecked"`
	// Transient counts groups that differed and then matched: rows in flight.
	Transient int  `json:"transient"`
	Checks    int  `json:"checks"`
	Quiet     bool `json:"quiet"`
}

// Report is the outcome of verifying one MV.
type Report struct {
	Database    string   `json:"database"`
	Name        string   `json:"name"`
	Version     int      `json:"version"`
	Target      string   `json:"target_table"`
	Source      string   `json:"source_table"`
	Merge       string   `json:"merge"`
	Keys        []string `json:"keys"`
	Values      []string `json:"values"`
	NotCompared []string `json:"not_compared"`
	Scopes      []Scope  `json:"scopes"`
	// Groups, Equal, Differ, Missing and Extra count groups over every
	// scope; Unchecked the differing groups beyond the limit.
	Groups    uint64 `json:"groups"`
	Equal     uint64 `json:"equal"`
	Differ    int    `json:"differ"`
	Missing   int    `json:"missing"`
	Extra     int    `json:"extra"`
	Unchecked int    `json:"unchecked"`
	// Differences are the confirmed differences, ordered by shard and key.
	Differences []Difference `json:"differences"`
	Seconds     float64      `json:"seconds"`
	OK          bool         `json:"ok"`
}

// Count is the number of groups that differ.
func (r *Report) Count() int { return r.Differ + r.Missing + r.Extra + r.Unchecked }
