// Package server is shirath's daemon: a level-based reconcile loop that moves
// every MV toward its desired spec (stored through the REST API, or read
// from a spec directory), and the REST API, health checks and metrics.
//
// Each MV is reconciled on its own, by a small pool of workers fed by a
// queue that never hands the same MV to two workers at once: plan the one
// spec, apply its change with the executor, requeue. An error is retried
// with exponential backoff; an invalid spec, a change the planner blocks and
// a job that needs attention are terminal and wait for the spec to change
// (or for an operator's backfill request), so one MV's failure never holds
// the others up.
package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shirath/shirath/executor"
	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// Store is what the daemon needs from the job store.
type Store interface {
	executor.Store
	ListJobs(ctx context.Context) ([]*state.Job, error)
	PutSpec(ctx context.Context, rec state.SpecRecord, force bool) (bool, error)
	GetSpec(ctx context.Context, database, name string) (*state.SpecRecord, error)
	ListSpecs(ctx context.Context) ([]*state.SpecRecord, error)
	DeleteSpec(ctx context.Context, database, name string) error
	RecordVerify(ctx context.Context, id int64, sum state.VerifySummary) error
}

// Config configures a Server. Zero durations take the defaults in brackets.
type Config struct {
	Store Store
	// Connect returns a new ClickHouse connector. Every reconcile uses its
	// own and closes it, so that it reads the topology afresh (a node that
	// was down comes back).
	Connect func() *planner.Connector
	Log     hclog.Logger
	// SpecDir, when set, is read again on every scan; its specs are desired
	// as much as those stored through the API.
	SpecDir string
	// Prune drops an MV whose spec file this daemon loaded and which was
	// then removed from SpecDir. Without it the daemon never drops an MV
	// on its own.
	Prune bool
	// Workers reconcile that many MVs at once [2].
	Workers int
	// Resync is how often an MV that is up to date is checked again [5m].
	Resync time.Duration
	// ScanInterval is how often the desired specs are listed to find new and
	// changed ones [10s]. A write through the API starts its MV at once.
	ScanInterval time.Duration
	// BackoffBase and BackoffMax bound the retry delay of a failing MV [2s, 5m].
	BackoffBase, BackoffMax time.Duration
	// WaitRequeue is how soon an MV whose source has not reached the fence
	// yet is looked at again [10s].
	WaitRequeue time.Duration
	// Token, when set, is required as a bearer token on every /api route.
	Token string
	// Executor holds the executor options (fence headroom, source wait);
	// Holder and OnEvent are set by the server.
	Executor executor.Options
}

// Server runs the reconcile loop and serves the API.
type Server struct {
	cfg     Config
	store   Store
	log     hclog.Logger
	q       *queue
	metrics *metrics
	reg     *prometheus.Registry // what /metrics serves
	token   [32]byte             // sha256 of the token; compared in constant time
	probe   *planner.Connector

	mu      sync.Mutex
	keys    map[string]*keyState
	running map[string]*runningKey
	held    map[string]int
	dirErrs []string
	specDir specDirCache // the spec directory's last load (desired.go)
}

type keyState struct {
	hash     string // of the definition last seen by a scan or an API write
	cond     Condition
	failures int
	// fromFile: its spec was loaded from a file of the spec directory by
	// this daemon; with Prune, removing that file drops the MV.
	fromFile bool
	// prune: its spec file was removed and the MV is to be dropped.
	prune bool
	// refresh: a refreshable MV's state, read at its last reconcile.
	refresh *chclient.RefreshState
}

type runningKey struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Condition is the daemon's view of one MV's reconciliation, in the manner of
// a Kubernetes status condition.
type Condition struct {
	// State is one of queued, running, synced, waiting, retrying, and the
	// terminal blocked, invalid, needs_attention and paused.
	State   string `json:"state"`
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
	// Terminal: the daemon does not try again until the spec changes or an
	// operator asks for a backfill.
	Terminal      bool       `json:"terminal"`
	Failures      int        `json:"failures"`
	UpdatedAt     time.Time  `json:"updated_at"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	// Refresh is a refreshable MV's state as of its last reconcile; the
	// view shows it as the MV's "refresh".
	Refresh *chclient.RefreshState `json:"-"`
}

// Condition states.
const (
	CondQueued         = "queued"
	CondRunning        = "running"
	CondSynced         = "synced"
	CondWaiting        = "waiting"
	CondRetrying       = "retrying"
	CondBlocked        = "blocked"
	CondInvalid        = "invalid"
	CondNeedsAttention = "needs_attention"
	CondPaused         = "paused"
)

// TerminalError is a reconcile error that retrying cannot fix.
type TerminalError struct {
	State  string // CondBlocked, CondInvalid, CondNeedsAttention or CondPaused
	Reason string
	Err    error
}

func (e *TerminalError) Error() string { return e.Err.Error() }
func (e *TerminalError) Unwrap() error { return e.Err }

func terminal(state, reason string, err error) error {
	return &TerminalError{State: state, Reason: reason, Err: err}
}

// Result tells the worker when to look at the MV again.
type Result struct {
	RequeueAfter time.Duration
}

// New makes a server; Run starts it.
func New(cfg Config) *Server {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 5 * time.Minute
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = 10 * time.Second
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = 2 * time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Minute
	}
	if cfg.WaitRequeue <= 0 {
		cfg.WaitRequeue = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.Executor.Holder == "" {
		host, _ := os.Hostname()
		cfg.Executor.Holder = fmt.Sprintf("serve pid %d on %s", os.Getpid(), host)
	}
	s := &Server{
		cfg:     cfg,
		store:   cfg.Store,
		log:     cfg.Log,
		q:       newQueue(),
		keys:    map[string]*keyState{},
		running: map[string]*runningKey{},
		held:    map[string]int{},
	}
	s.metrics = newMetrics(s.jobCounts)
	s.reg = newRegistry(s.metrics)
	if cfg.Token != "" {
		s.token = sha256.Sum256([]byte(cfg.Token))
	}
	return s
}

// Run serves the API on ln and runs the reconcile loop until ctx ends. Then
// it stops gracefully: no new MV is started, each worker lets its batch in
// flight finish (the executor records it, so a restart resumes right after
// it), and the HTTP server finishes the requests in progress.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	s.probe = s.cfg.Connect()
	defer s.probe.Close()
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          s.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()

	var workers sync.WaitGroup
	for i := 0; i < s.cfg.Workers; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			s.work(ctx)
		}()
	}
	workers.Add(1)
	go func() {
		defer workers.Done()
		s.scanLoop(ctx)
	}()
	s.log.Info("serving", "addr", ln.Addr().String(), "workers", s.cfg.Workers, "spec_dir", s.cfg.SpecDir, "auth", s.cfg.Token != "")

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve http: %w", err)
	}
	s.log.Info("stopping: letting the batches in flight finish")
	s.q.ShutDown()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var shut sync.WaitGroup
	shut.Add(1)
	go func() {
		defer shut.Done()
		if serr := hs.Shutdown(sctx); serr != nil {
			s.log.Warn("http shutdown", "error", serr)
		}
	}()
	workers.Wait()
	shut.Wait()
	s.log.Info("stopped")
	return err
}

// scanLoop lists the desired specs now and every ScanInterval, and queues
// the MVs that are new or whose definition changed.
func (s *Server) scanLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ScanInterval)
	defer t.Stop()
	for {
		if err := s.scan(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("list desired specs", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) scan(ctx context.Context) error {
	desired, dirErrs, err := s.desiredAll(ctx)
	if err != nil {
		return err
	}
	for _, e := range dirErrs {
		s.log.Warn("spec directory", "error", e)
	}
	s.mu.Lock()
	var add []string
	for key, d := range desired {
		ks := s.keys[key]
		if ks != nil && ks.hash == d.Hash && !ks.prune {
			ks.fromFile = d.Origin == state.OriginFile
			continue
		}
		s.keys[key] = &keyState{hash: d.Hash, fromFile: d.Origin == state.OriginFile, cond: Condition{State: CondQueued, Reason: "SpecChanged", UpdatedAt: time.Now()}}
		if ks == nil {
			s.keys[key].cond.Reason = "NewSpec"
		}
		add = append(add, key)
	}
	for key, ks := range s.keys {
		if _, ok := desired[key]; ok || s.running[key] != nil {
			continue
		}
		if s.cfg.Prune && ks.fromFile {
			if !ks.prune {
				ks.prune = true
				ks.cond = Condition{State: CondQueued, Reason: "SpecFileRemoved", Message: "its spec file was removed: the MV is dropped (--prune)", UpdatedAt: time.Now()}
				add = append(add, key)
			}
			continue
		}
		delete(s.keys, key)
		s.q.Forget(key)
	}
	s.mu.Unlock()
	sort.Strings(add)
	for _, k := range add {
		s.q.Add(k)
	}
	for _, k := range add {
		if d, ok := desired[k]; ok && d.Spec != nil {
			s.pokeReaders(desired, d.Spec)
		}
	}
	return nil
}

// pokeReaders looks again at the MVs that read what up builds (a chain):
// up's spec, new or changed, may be what they wait for, or what stopped
// them (blocked for want of their source). One being reconciled right now
// is looked at again once done (the queue keeps it dirty).
func (s *Server) pokeReaders(desired map[string]Desired, up *specs.Spec) {
	for k, d := range desired {
		if d.Spec == nil || d.Spec.Database != up.Database || (d.Spec.SourceTable != up.TargetTable && d.Spec.SourceTable != up.DistributedTable) {
			continue
		}
		s.Poke(k, "")
	}
}

// Poke queues key now, clearing its backoff and a terminal condition: an API
// write or an operator's request asks for it to be looked at again.
func (s *Server) Poke(key, hash string) {
	s.mu.Lock()
	ks := s.keys[key]
	if ks == nil {
		ks = &keyState{}
		s.keys[key] = ks
	}
	if hash != "" {
		ks.hash = hash
	}
	ks.failures = 0
	ks.cond = Condition{State: CondQueued, Reason: "Requested", UpdatedAt: time.Now()}
	s.mu.Unlock()
	s.q.Add(key)
}

// hold stops the reconciliation of key, waiting for the batch in flight, and
// keeps workers off it until release: the API drops or rebuilds an MV only
// while nothing works on it.
func (s *Server) hold(ctx context.Context, key string) error {
	s.mu.Lock()
	s.held[key]++
	r := s.running[key]
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	r.cancel()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		s.release(key, false)
		return fmt.Errorf("wait for the reconciliation of %s to stop: %w", key, ctx.Err())
	}
}

func (s *Server) release(key string, requeue bool) {
	s.mu.Lock()
	s.held[key]--
	if s.held[key] <= 0 {
		delete(s.held, key)
	}
	s.mu.Unlock()
	if requeue {
		s.Poke(key, "")
	}
}

func (s *Server) work(ctx context.Context) {
	for {
		key, ok := s.q.Get()
		if !ok {
			return
		}
		s.mu.Lock()
		if s.held[key] > 0 {
			s.mu.Unlock()
			s.q.Done(key)
			continue
		}
		kctx, cancel := context.WithCancel(ctx)
		r := &runningKey{cancel: cancel, done: make(chan struct{})}
		s.running[key] = r
		if ks := s.keys[key]; ks != nil {
			ks.cond.State, ks.cond.Reason, ks.cond.NextAttemptAt, ks.cond.UpdatedAt = CondRunning, "Reconciling", nil, time.Now()
		}
		s.mu.Unlock()

		start := time.Now()
		res, err := s.reconcileSafe(kctx, key)
		interrupted := kctx.Err() != nil
		cancel()
		s.mu.Lock()
		delete(s.running, key)
		close(r.done)
		s.mu.Unlock()
		s.finish(key, res, err, interrupted, time.Since(start))
		s.q.Done(key)
	}
}

// reconcileSafe turns a panic in one MV's reconciliation into an error of
// that MV, so that it cannot take the daemon and the other MVs down.
func (s *Server) reconcileSafe(ctx context.Context, key string) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("reconcile panicked", "mv", key, "panic", p)
			err = fmt.Errorf("internal error: %v", p)
		}
	}()
	return s.Reconcile(ctx, key)
}

// finish records the outcome of one reconciliation and schedules the next.
func (s *Server) finish(key string, res Result, err error, interrupted bool, took time.Duration) {
	log := s.log.With("mv", key)
	s.mu.Lock()
	defer s.mu.Unlock()
	ks := s.keys[key]
	if ks == nil {
		return // no spec any more
	}
	now := time.Now()
	var te *TerminalError
	var le *state.LockedError
	switch {
	case interrupted:
		// Stopped by a shutdown or by the API (drop, rebuild): whoever
		// stopped it decides what comes next.
		s.metrics.reconciled("interrupted")
		ks.cond = Condition{State: CondQueued, Reason: "Interrupted", Message: "stopped before it finished; continues on the next start", Failures: ks.failures, UpdatedAt: now}
		return
	case errors.As(err, &te):
		s.metrics.reconciled(te.State)
		s.metrics.reconcileError(te.State)
		ks.failures = 0
		ks.cond = Condition{State: te.State, Reason: te.Reason, Message: te.Err.Error(), Terminal: true, UpdatedAt: now}
		log.Warn("not retried until the spec changes", "state", te.State, "reason", te.Reason, "error", te.Err)
		return
	case err != nil:
		ks.failures++
		delay := backoff(ks.failures, s.cfg.BackoffBase, s.cfg.BackoffMax)
		next := now.Add(delay)
		reason, kind := "Error", "error"
		if errors.As(err, &le) {
			reason, kind = "Locked", "locked"
		}
		s.metrics.reconciled("error")
		s.metrics.reconcileError(kind)
		ks.cond = Condition{State: CondRetrying, Reason: reason, Message: err.Error(), Failures: ks.failures, UpdatedAt: now, NextAttemptAt: &next}
		log.Warn("reconcile failed; retrying", "error", err, "failures", ks.failures, "retry_in", delay.String())
		s.q.AddAfter(key, delay)
		return
	}
	s.metrics.reconciled("ok")
	ks.failures = 0
	if ks.cond.State == CondRunning {
		ks.cond.State = CondSynced
	}
	ks.cond.Failures, ks.cond.Terminal, ks.cond.UpdatedAt = 0, false, now
	if res.RequeueAfter > 0 {
		next := now.Add(res.RequeueAfter)
		ks.cond.NextAttemptAt = &next
		s.q.AddAfter(key, res.RequeueAfter)
	}
	log.Debug("reconciled", "state", ks.cond.State, "took", took.Round(time.Millisecond).String())
}

func (s *Server) setCond(key, state, reason, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ks := s.keys[key]; ks != nil {
		ks.cond = Condition{State: state, Reason: reason, Message: msg, UpdatedAt: time.Now()}
	}
}

// condition returns a copy of the condition of key, or nil.
func (s *Server) condition(key string) *Condition {
	s.mu.Lock()
	defer s.mu.Unlock()
	ks := s.keys[key]
	if ks == nil {
		return nil
	}
	c := ks.cond
	c.Refresh = ks.refresh
	return &c
}

// noteRefresh reads a refreshable MV's state from the first node that
// answers, for the API and /metrics; a failure to read it is logged, not
// an error of the MV.
func (s *Server) noteRefresh(ctx context.Context, conn *planner.Connector, key string, ch *planner.ResourceChange) {
	if ch.Spec == nil || ch.Spec.Refresh == nil {
		return
	}
	topo, err := conn.Topology(ctx, ch.Cluster)
	if err != nil {
		s.log.Warn("read refresh state", "mv", key, "error", err)
		return
	}
	for _, n := range topo.Healthy() {
		st, err := chclient.ReadRefreshState(ctx, n.Conn, ch.Database, sqlgen.VersionedName(ch.Spec.Name, max(ch.LiveVersion, 1)))
		if err != nil {
			s.log.Warn("read refresh state", "mv", key, "node", n.Addr, "error", err)
			return
		}
		s.mu.Lock()
		if ks := s.keys[key]; ks != nil {
			ks.refresh = st
		}
		s.mu.Unlock()
		s.metrics.refreshed(key, st)
		return
	}
}

// Reconcile moves one MV a step toward its desired spec: it reads the
// desired spec and the live state afresh, plans that one spec and applies
// its change. It returns when the MV is complete (to be checked again after
// Resync), when the source has not reached the fence yet, or with an error.
func (s *Server) Reconcile(ctx context.Context, key string) (Result, error) {
	db, name, err := ParseKey(key)
	if err != nil {
		return Result{}, terminal(CondInvalid, "InvalidName", err)
	}
	d, ok, err := s.desiredOne(ctx, db, name)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		if s.pruning(key) {
			return s.prune(ctx, key)
		}
		return Result{}, nil // deleted: nothing to do, and nothing is dropped
	}
	if d.Err != nil {
		return Result{}, terminal(CondInvalid, "InvalidSpec", d.Err)
	}
	conn := s.cfg.Connect()
	defer conn.Close()
	// The MVs this one reads from (a chain) are planned with it, so that
	// it waits until they are complete; each is reconciled under its own key.
	chain, err := s.upstreamOf(ctx, d.Spec)
	if err != nil {
		return Result{}, err
	}
	p := &planner.Planner{Conn: conn, Store: s.store, Log: s.log.Named("planner")}
	plan, snap, err := p.Plan(ctx, chain, false)
	if err != nil {
		return Result{}, fmt.Errorf("plan: %w", err)
	}
	var ch *planner.ResourceChange
	for _, c := range plan.Changes {
		if c.Address() == key {
			ch = c
		}
	}
	if ch == nil {
		return Result{}, fmt.Errorf("plan: no change for %s", key)
	}
	var job *state.Job
	for _, j := range snap.Jobs {
		if Key(j.Database, j.Name) == key {
			job = j
		}
	}
	switch {
	case job != nil && job.Status == state.StatusPaused:
		return Result{}, terminal(CondPaused, "Paused", errors.New("the job is paused: POST /api/mv/"+key+"/backfill rebuilds it"))
	case job != nil && job.Status == state.StatusNeedsAttention:
		return Result{}, terminal(CondNeedsAttention, "NeedsAttention", errors.New(job.ErrorMessage))
	case ch.Blocked != "":
		return Result{}, terminal(CondBlocked, "Blocked", errors.New(ch.Blocked))
	case ch.Deferred != "":
		s.setCond(key, CondWaiting, "WaitingForUpstream", ch.Deferred)
		return Result{RequeueAfter: s.cfg.WaitRequeue}, nil
	case ch.Action == planner.NoOp:
		s.noteRefresh(ctx, conn, key, ch)
		s.setCond(key, CondRunning, "UpToDate", ch.Reason)
		return Result{RequeueAfter: s.cfg.Resync}, nil
	}
	s.setCond(key, CondRunning, ch.Action.String(), ch.Reason)
	var processed int64
	if job != nil && ch.Action != planner.Replace {
		processed = job.ProcessedRows
	}
	s.metrics.begin(key, processed)
	opts := s.cfg.Executor
	opts.WaitForLock = false
	opts.OnEvent = s.onEvent
	ex := &executor.Executor{Conn: conn, Store: s.store, Log: s.log.Named("executor"), Opts: opts}
	err = ex.ApplyChange(ctx, ch)
	switch {
	case err == nil:
		s.noteRefresh(ctx, conn, key, ch)
		s.setCond(key, CondRunning, "Completed", "")
		return Result{RequeueAfter: s.cfg.Resync}, nil
	case ctx.Err() != nil:
		return Result{}, ctx.Err()
	case errors.Is(err, executor.ErrWaiting):
		s.setCond(key, CondWaiting, "WaitingForSource", err.Error())
		return Result{RequeueAfter: s.cfg.WaitRequeue}, nil
	case errors.Is(err, executor.ErrNeedsAttention):
		return Result{}, terminal(CondNeedsAttention, "NeedsAttention", err)
	case errors.Is(err, executor.ErrBlocked):
		return Result{}, terminal(CondBlocked, "Blocked", err)
	}
	return Result{}, err
}

// onEvent feeds the metrics from the executor's progress and logs it.
func (s *Server) onEvent(ev executor.Event) {
	s.metrics.event(ev)
	switch ev.Kind {
	case executor.EventProgress:
		s.log.Debug("progress", "mv", ev.MV, "processed", ev.Processed, "total", ev.Total, "shard", ev.Shard, "batch", ev.Message)
	default:
		s.log.Info(string(ev.Kind), "mv", ev.MV, "step", ev.Step, "message", ev.Message)
	}
}
