// Package executor applies a plan: it creates the objects of each MV, fences
// the MV against concurrent inserts, backfills history in server-side
// batches, and optimizes, recording every step in the job store first so
// that any step can be re-run after a crash.
//
// It never prints: progress goes to the OnEvent hook.
package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/hashicorp/go-hclog"

	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// Store is what the executor needs from the job store.
type Store interface {
	GetJob(ctx context.Context, database, name string) (*state.Job, error)
	CreateJob(ctx context.Context, j *state.Job) error
	UpdateJob(ctx context.Context, j *state.Job) error
	DeleteJob(ctx context.Context, id int64) error
	UpsertShard(ctx context.Context, jobID int64, p state.ShardProgress) error
	DeleteShards(ctx context.Context, jobID int64) error
	BeginBatch(ctx context.Context, jobID int64, shard int, replica string, lo, hi int64, queryID string) error
	CompleteBatch(ctx context.Context, jobID int64, shard int, replica string, hi int64, rows int64) error
	MarkInDoubt(ctx context.Context, jobID int64, shard int, replica string) error
	Lock(ctx context.Context, key, holder string, wait bool, onWait func(holder string, since time.Time)) (func(), error)
	ListJobs(ctx context.Context) ([]*state.Job, error)
}

// Sentinel errors; callers use errors.Is.
var (
	// ErrBlocked: the plan holds a change that cannot be applied.
	ErrBlocked = errors.New("executor: change cannot be applied")
	// ErrWaiting: the job waits for the source to pass the fence; apply again later.
	ErrWaiting = errors.New("executor: waiting for the source")
	// ErrNeedsAttention: a batch may or may not have been written; an operator must decide.
	ErrNeedsAttention = errors.New("executor: job needs attention")
)

// EventKind says what an Event reports.
type EventKind string

const (
	EventStep     EventKind = "step"     // a step started
	EventProgress EventKind = "progress" // a batch finished
	EventWaiting  EventKind = "waiting"  // waiting for something, with why
	EventDone     EventKind = "done"     // the MV is complete
)

// Event reports progress of an apply.
type Event struct {
	Kind      EventKind
	MV        string // database.name
	Step      planner.StepKind
	Message   string
	Shard     int
	Processed int64 // source rows backfilled so far (whole job)
	Total     int64 // source rows to backfill (whole job)
}

// Options tune the executor. Zero values take the defaults in brackets.
type Options struct {
	// Holder names this process in lock messages ["apply pid N on HOST"].
	Holder string
	// WaitForLock waits for a lock held by another apply instead of failing.
	WaitForLock bool
	// FenceHeadroom is how many seconds of the observed insert rate the fence
	// leaves above max(key) [3s]; doubled on every retry.
	FenceHeadroom time.Duration
	// FenceAttempts bounds the retries of an unsafe fence [4].
	FenceAttempts int
	// InsertWaitTimeout bounds the wait for INSERTs that were running when
	// the MV was created [5m].
	InsertWaitTimeout time.Duration
	// SourceWaitTimeout bounds the wait for the source to pass the fence
	// [10m]; the job then stays waiting and a later apply continues.
	SourceWaitTimeout time.Duration
	// DDLTimeout is distributed_ddl_task_timeout for ON CLUSTER statements
	// [30s]: a node that went down fails the call in seconds, not the
	// server's default 180.
	DDLTimeout time.Duration
	// StoreRetry is how long a job store call that cannot reach
	// PostgreSQL is retried, with backoff, before the apply fails [5m];
	// negative: not retried.
	StoreRetry time.Duration
	// Parallelism is how many MVs Apply works on at once [4]; each holds
	// its own lock and fence.
	Parallelism int
	// ShardParallelism is how many copies of a target (shards, or nodes of
	// a target that does not replicate) are backfilled at once [every one].
	ShardParallelism int
	// OnEvent receives progress; it must not block for long. Apply calls it
	// from one goroutine at a time, whatever the parallelism.
	OnEvent func(Event)
}

// DefaultParallelism is how many MVs Apply works on at once unless told, as
// Terraform's -parallelism.
const DefaultParallelism = 4

// Executor applies plans.
type Executor struct {
	Conn  *planner.Connector
	Store Store
	Log   hclog.Logger
	Opts  Options

	once    sync.Once
	eventMu sync.Mutex // serialises OnEvent
	// switchMu serialises the switches of MVs of one database (by
	// cluster and database): the rollups of a chain switch at about the
	// same time, and 18.16 was seen failing a RENAME of one with an error
	// naming the table a concurrent DROP of the other was dropping.
	switchMu sync.Map
	// sources is what the MVs of this apply learn about the sources they
	// share (shared.go).
	sources sourceFacts
}

// switchLock locks the switches of the database of r's MV.
func (e *Executor) switchLock(r *run) func() {
	m, _ := e.switchMu.LoadOrStore(r.c.Cluster+"\x00"+r.c.Database, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

func (e *Executor) defaults() { e.once.Do(e.setDefaults) }

func (e *Executor) setDefaults() {
	o := &e.Opts
	if o.Holder == "" {
		host, _ := os.Hostname()
		o.Holder = fmt.Sprintf("apply pid %d on %s", os.Getpid(), host)
	}
	if o.FenceHeadroom == 0 {
		o.FenceHeadroom = 3 * time.Second
	}
	if o.FenceAttempts == 0 {
		o.FenceAttempts = 4
	}
	if o.InsertWaitTimeout == 0 {
		o.InsertWaitTimeout = 5 * time.Minute
	}
	if o.SourceWaitTimeout == 0 {
		o.SourceWaitTimeout = 10 * time.Minute
	}
	if o.DDLTimeout == 0 {
		o.DDLTimeout = 30 * time.Second
	}
	if o.StoreRetry == 0 {
		o.StoreRetry = 5 * time.Minute
	}
	if o.Parallelism <= 0 {
		o.Parallelism = DefaultParallelism
	}
	if e.Log == nil {
		e.Log = hclog.NewNullLogger()
	}
	if _, ok := e.Store.(retryStore); !ok && o.StoreRetry > 0 {
		e.Store = retryStore{Store: e.Store, max: o.StoreRetry, onWait: func(what string, err error, delay time.Duration) {
			e.Log.Warn("the job store does not answer; retrying", "doing", what, "in", delay, "error", err)
			e.emit(Event{Kind: EventWaiting, Message: fmt.Sprintf("PostgreSQL does not answer (%v): retrying to %s in %s", err, what, delay)})
		}}
	}
	if crashPointsOn {
		e.Store = pointStore{Store: e.Store}
	}
}

func (e *Executor) emit(ev Event) {
	if e.Opts.OnEvent != nil {
		e.eventMu.Lock()
		defer e.eventMu.Unlock()
		e.Opts.OnEvent(ev)
	}
}

// Apply applies every change of the plan, up to Parallelism MVs at once, in
// the plan's order (upstream MVs of a chain first, destroys downstream
// first). A change starts only once every earlier change it is linked to by
// a dependency (either way) has ended, and not at all when one of those
// failed. A change that fails does not stop the others; the errors are
// joined, in the plan's order. Once ctx is done no further MV starts.
// Deferred changes are left to the caller, to plan again once their
// upstream MVs are complete.
func (e *Executor) Apply(ctx context.Context, p *planner.Plan) error {
	e.defaults()
	errs := make([]error, len(p.Changes))
	var todo []*planner.ResourceChange
	var at []int // index in p.Changes of each of todo
	for i, c := range p.Changes {
		switch {
		case c.Action == planner.NoOp:
		case c.Blocked != "":
			errs[i] = fmt.Errorf("%w: %s", ErrBlocked, c.Blocked)
		case c.Deferred != "":
			// planned again by the caller once its upstream is complete
		default:
			todo = append(todo, c)
			at = append(at, i)
		}
	}
	res := schedule(ctx, len(todo), e.Opts.Parallelism, linked(todo), func(k int) error {
		return e.ApplyChange(ctx, todo[k])
	})
	for k, err := range res {
		errs[at[k]] = err
	}
	var out []error
	for i, err := range errs {
		if err != nil {
			out = append(out, fmt.Errorf("%s: %w", p.Changes[i].Address(), err))
		}
	}
	return errors.Join(out...)
}

// ApplyChange applies the change of one MV under its lock.
func (e *Executor) ApplyChange(ctx context.Context, c *planner.ResourceChange) (err error) {
	defer func() {
		if why := chclient.Explain(err); why != "" {
			err = fmt.Errorf("%w (%s)", err, why)
		}
	}()
	e.defaults()
	unlock, err := e.Store.Lock(ctx, "mv:"+c.Address(), e.Opts.Holder, e.Opts.WaitForLock, func(holder string, since time.Time) {
		e.emit(Event{Kind: EventWaiting, MV: c.Address(), Message: fmt.Sprintf("waiting for the lock held by %s since %s", holder, since.Format(time.RFC3339))})
	})
	if err != nil {
		return err
	}
	defer unlock()

	job, err := e.Store.GetJob(ctx, c.Database, c.Name)
	if errors.Is(err, state.ErrNotFound) {
		job, err = nil, nil
	}
	if err != nil {
		return err
	}
	r := &run{e: e, c: c, job: job}
	if c.Spec != nil {
		r.mv = c.MV()
	}
	r.topo, err = e.Conn.Topology(ctx, c.Cluster)
	if err != nil {
		return err
	}
	r.instrument()
	r.mv.DropSync = r.topo.DropSync()
	if r.job != nil && r.job.Deployment == "" {
		// Recorded before deployments were: this apply claims it.
		r.job.Deployment = r.topo.Deployment
	}
	switch c.Action {
	case planner.Delete:
		return r.destroy(withStep(ctx, "destroy"))
	case planner.Replace:
		if err := r.destroy(withStep(ctx, "destroy")); err != nil {
			return err
		}
		r.job = nil
		return r.converge(ctx)
	case planner.Create, planner.Update:
		if job != nil && job.SpecHash != specs.Hash(c.Spec) {
			return fmt.Errorf("%w: the job was created from another version of the spec (plan again)", ErrBlocked)
		}
		for _, st := range c.Steps {
			if st.Kind == planner.StepModifyRefresh {
				if err := r.modifyRefresh(withStep(ctx, "modify-refresh")); err != nil {
					return err
				}
			}
		}
		if job != nil {
			if err := r.recordSpec(withStep(ctx, "record-spec")); err != nil {
				return err
			}
		}
		for _, st := range c.Steps {
			switch {
			case st.Kind == planner.StepCreateDistributed && len(st.Nodes) > 0:
				if err := r.createDistributed(withStep(ctx, "create-distributed"), st.Nodes); err != nil {
					return err
				}
			case st.Kind == planner.StepDropOld && job != nil && !job.Changing():
				left, err := r.dropLeftovers(ctx, max(job.LiveVersion, 1))
				if err != nil {
					return err
				}
				if len(left) > 0 {
					return fmt.Errorf("still not dropped: %s (apply again later)", strings.Join(left, "; "))
				}
			}
		}
		return r.converge(ctx)
	case planner.Change:
		return r.change(withStep(ctx, "change"))
	case planner.Adopt:
		return r.adopt(withStep(ctx, "adopt"))
	}
	return fmt.Errorf("%w: %s changes cannot be applied", ErrBlocked, c.Action)
}

// run is the application of one change.
type run struct {
	e    *Executor
	c    *planner.ResourceChange
	mv   sqlgen.MV
	job  *state.Job
	topo *planner.Topology
	// mu guards job while the copies of the target are backfilled at once
	// (backfill.go): each stream has its own shard progress, but they share
	// the job's totals and status.
	mu sync.Mutex
}

func (r *run) log() hclog.Logger { return r.e.Log.With("mv", r.c.Address()) }

func (r *run) emit(ev Event) {
	ev.MV = r.c.Address()
	r.mu.Lock()
	if r.job != nil && ev.Total == 0 {
		ev.Processed, ev.Total = r.job.ProcessedRows, r.job.TotalRows
	}
	r.mu.Unlock()
	r.e.emit(ev)
}

// converge moves the job forward from whatever state it is in until it is
// completed, waiting, or stopped by an error. Each state's work is safe to
// repeat: that is what makes a crash at any point recoverable.
func (r *run) converge(ctx context.Context) error {
	if r.job == nil {
		if err := r.newJob(withStep(ctx, "new-job")); err != nil {
			return err
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		j := r.job
		var err error
		switch {
		case j.Status == state.StatusNeedsAttention:
			return fmt.Errorf("%w: %s", ErrNeedsAttention, j.ErrorMessage)
		case !j.FenceVerified && r.c.Spec.Refresh != nil:
			err = r.createRefreshable(withStep(ctx, "create-refreshable"))
		case !j.FenceVerified:
			err = r.fence(withStep(ctx, "fence"))
		case j.Status == state.StatusCompleted && j.Changing() && r.c.HoldSwitch != "":
			// MVs downstream are rebuilt over this version first: apply
			// plans them, then the switch (planner/ripple.go).
			r.emit(Event{Kind: EventWaiting, Message: fmt.Sprintf("version %d is built; %s", j.Version, r.c.HoldSwitch)})
			return nil
		case j.Status == state.StatusCompleted && j.Changing():
			unlock := r.e.switchLock(r)
			err = r.swap(withStep(ctx, "swap"))
			unlock()
		case j.Status == state.StatusCompleted:
			r.emit(Event{Kind: EventDone, Message: "completed"})
			return nil
		case j.Status == state.StatusOptimizing:
			err = r.optimize(withStep(ctx, "optimize"))
		case r.c.Spec.Refresh != nil:
			err = r.firstRefresh(withStep(ctx, "first-refresh"))
		case r.c.Spec.Backfill.Disabled:
			err = r.setStatus(withStep(ctx, "no-backfill"), state.StatusCompleted, "")
		case j.Status == state.StatusBackfilling:
			err = r.backfill(withStep(ctx, "backfill"))
		case r.backfillStarted():
			// Failed or paused during the backfill or the OPTIMIZE, or
			// killed after waitSource recorded every copy and before it
			// recorded the job: resume from the recorded progress.
			// waitSource would count again from the first key and copy the
			// batches already done a second time. The job's total is the
			// copies' (the kill may have come before it was recorded).
			r.job.TotalRows = r.shardTotal()
			err = r.setStatus(withStep(ctx, "resume"), state.StatusBackfilling, "")
		default: // waiting, failed or paused after the fence: wait for the source, then backfill
			err = r.waitSource(withStep(ctx, "wait"))
		}
		if err != nil {
			if errors.Is(err, ErrNeedsAttention) {
				return err
			}
			if errors.Is(err, ErrWaiting) || ctx.Err() != nil {
				return err
			}
			msg := err.Error()
			if uerr := r.setStatus(withStep(context.WithoutCancel(ctx), "record-failure"), state.StatusFailed, msg); uerr != nil {
				r.log().Error("record failure", "error", uerr)
			}
			return err
		}
	}
}

// backfillStarted reports whether every copy of the target has its
// recorded progress: waitSource wrote them all, so batches may have run.
// Shard rows are deleted only when a new fence starts over.
func (r *run) backfillStarted() bool {
	if len(r.job.Shards) == 0 {
		return false
	}
	for _, group := range r.copies() {
		sp := r.shardProgress(group[0].Shard, r.copyName(group))
		if sp == nil || sp.LastProcessedID == nil {
			return false
		}
	}
	return true
}

// shardTotal is the rows to backfill of every copy, as waitSource counted
// them.
func (r *run) shardTotal() int64 {
	var total int64
	for _, sp := range r.job.Shards {
		total += sp.TotalRows
	}
	return total
}

// recordSpec records the spec with the job when what the hash leaves out
// (prevent_destroy) changed: it protects the MV after its spec is removed.
func (r *run) recordSpec(ctx context.Context) error {
	old, err := specs.ParseJSON(r.job.Config)
	if err == nil && old.PreventDestroy == r.c.Spec.PreventDestroy {
		return nil
	}
	cfg, err := json.Marshal(r.c.Spec)
	if err != nil {
		return err
	}
	r.job.Config = cfg
	return r.e.Store.UpdateJob(ctx, r.job)
}

func (r *run) newJob(ctx context.Context) error {
	cfg, err := json.Marshal(r.c.Spec)
	if err != nil {
		return err
	}
	var nodes []string
	for _, n := range r.topo.Nodes {
		nodes = append(nodes, n.Addr)
	}
	j := &state.Job{
		Name: r.c.Name, Database: r.c.Database, SourceTable: r.c.Spec.SourceTable, TargetTable: r.mv.Spec.TargetTable,
		Status: state.StatusCreating, ClusterName: r.c.Cluster, Nodes: nodes, Config: cfg, SpecHash: specs.Hash(r.c.Spec),
		Applied: map[string]state.AppliedObject{}, Deployment: r.topo.Deployment, Reads: r.c.Reads,
	}
	if err := r.e.Store.CreateJob(ctx, j); err != nil {
		return err
	}
	r.job = j
	return nil
}

func (r *run) setStatus(ctx context.Context, s state.Status, msg string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.job.Status = s
	r.job.ErrorMessage = msg
	return r.e.Store.UpdateJob(ctx, r.job)
}

func (r *run) exec(ctx context.Context, n *planner.Node, q string, extra ...clickhouse.Settings) error {
	if n.Err != nil {
		return fmt.Errorf("node %s does not answer: %w", n.Addr, n.Err)
	}
	r.log().Debug("exec", "node", n.Addr, "sql", q)
	settings := clickhouse.Settings{"distributed_ddl_task_timeout": int(r.e.Opts.DDLTimeout.Seconds())}
	for _, e := range extra {
		for k, v := range e {
			settings[k] = v
		}
	}
	qctx := clickhouse.Context(ctx, clickhouse.WithSettings(settings))
	if err := n.Conn.Exec(qctx, q); err != nil {
		return fmt.Errorf("%s on %s: %w", firstWords(q), n.Addr, err)
	}
	return nil
}

func firstWords(q string) string {
	f := strings.Fields(q)
	if len(f) > 6 {
		f = f[:6]
	}
	return strings.Join(f, " ")
}

func (r *run) createDistributed(ctx context.Context, nodes []string) error {
	r.emit(Event{Kind: EventStep, Step: planner.StepCreateDistributed, Message: "create the Distributed table on " + strings.Join(nodes, ", ")})
	q, err := r.mv.CreateDistributed(false)
	if err != nil {
		return err
	}
	for _, addr := range nodes {
		n := r.node(addr)
		if n == nil {
			return fmt.Errorf("node %s is not in cluster %s", addr, r.topo.Cluster)
		}
		if err := r.exec(ctx, n, q); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) node(addr string) *planner.Node {
	for _, n := range r.topo.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// serverCreateQuery reads back how the server printed an object, to detect
// drift later by comparing with the same server's printing.
func (r *run) serverCreateQuery(ctx context.Context, name string) (string, error) {
	for _, n := range r.topo.Healthy() {
		var q string
		err := n.Conn.QueryRow(ctx, "SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?", r.c.Database, name).Scan(&q)
		if err != nil {
			return "", fmt.Errorf("read back %s.%s on %s: %w", r.c.Database, name, n.Addr, err)
		}
		return q, nil
	}
	return "", fmt.Errorf("no node answers")
}

func firstHealthy(nodes []*planner.Node) *planner.Node {
	for _, n := range nodes {
		if n.Err == nil {
			return n
		}
	}
	return nil
}

// targetReplicated reports whether the target replicates between the
// replicas of a shard: then one replica per shard holds the copy to fill.
func (r *run) targetReplicated() bool {
	e := r.c.TargetEngine
	if e == "" && r.c.Spec != nil {
		e = r.c.Spec.Engine
	}
	return strings.HasPrefix(strings.TrimSpace(e), "Replicated")
}

// copies groups nodes by the copy of the target they share: a shard's
// replicas when the target replicates, else each node on its own.
func (r *run) copies() [][]*planner.Node {
	if r.targetReplicated() {
		return r.topo.Shards()
	}
	var out [][]*planner.Node
	for _, n := range r.topo.Nodes {
		out = append(out, []*planner.Node{n})
	}
	return out
}
