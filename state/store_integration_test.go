//go:build integration

package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shirath/shirath/internal/testenv"
	"github.com/shirath/shirath/migrations"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openStore opens a store on a fresh database.
func openStore(t *testing.T) (*Store, string) {
	t.Helper()
	url := testenv.Load(t).PostgresDB(t)
	s, err := Open(testCtx(t), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s, url
}

func allMigrations(t *testing.T) []string {
	t.Helper()
	ms, err := loadMigrations(migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.name)
	}
	return names
}

func recordedMigrations(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.pool.Query(testCtx(t), `SELECT name FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestMigrate(t *testing.T) {
	ctx := testCtx(t)
	url := testenv.Load(t).PostgresDB(t)
	s, err := connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	want := allMigrations(t)
	applied, err := s.Migrate(ctx)
	if err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	if strings.Join(applied, ",") != strings.Join(want, ",") {
		t.Errorf("first Migrate applied %v, want %v", applied, want)
	}
	applied, err = s.Migrate(ctx)
	if err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if len(applied) != 0 {
		t.Errorf("second Migrate applied %v, want nothing", applied)
	}
	if got := recordedMigrations(t, s); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
	for _, table := range []string{"mv_jobs", "mv_job_shards", "mv_specs", "mv_locks"} {
		var ok bool
		if err := s.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok); err != nil || !ok {
			t.Errorf("table %s missing (err %v)", table, err)
		}
	}

	// Open on a migrated database applies nothing and works.
	s2, err := Open(ctx, url)
	if err != nil {
		t.Fatalf("Open on a migrated database: %v", err)
	}
	s2.Close()
}

// The CHECK constraints accept exactly the statuses of the package.
func TestStatusCheckConstraint(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t)
	for _, st := range append(Statuses, "bogus") {
		_, err := s.pool.Exec(ctx, `INSERT INTO mv_jobs (name, source_table, target_table, status, config)
			VALUES ($1, 's', 't', $2, '{}')`, "job_"+string(st), st)
		if st.Valid() && err != nil {
			t.Errorf("status %s refused: %v", st, err)
		}
		if !st.Valid() && err == nil {
			t.Errorf("status %s accepted", st)
		}
	}
	var def string
	if err := s.pool.QueryRow(ctx, `SELECT database FROM mv_jobs WHERE name = 'job_pending'`).Scan(&def); err != nil || def != "default" {
		t.Errorf("default database = %q (err %v), want default", def, err)
	}
}

func TestMigrateConcurrent(t *testing.T) {
	ctx := testCtx(t)
	url := testenv.Load(t).PostgresDB(t)
	const n = 4
	stores := make([]*Store, n)
	for i := range stores {
		s, err := connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied []string
		start   = make(chan struct{})
	)
	errs := make([]error, n)
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			a, err := s.Migrate(ctx)
			errs[i] = err
			mu.Lock()
			applied = append(applied, a...)
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	// Every migration ran exactly once across the four processes.
	want := allMigrations(t)
	sort.Strings(applied)
	if strings.Join(applied, ",") != strings.Join(want, ",") {
		t.Errorf("applied across goroutines = %v, want each of %v once", applied, want)
	}
	if got := recordedMigrations(t, stores[0]); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
}

func i64(v int64) *int64 { return &v }

func fmtID(v *int64) string {
	if v == nil {
		return "nil"
	}
	return fmt.Sprint(*v)
}

func newJob(name string) *Job {
	return &Job{
		Name:        name,
		Database:    "analytics",
		SourceTable: "events",
		TargetTable: name + "_data",
		ClusterName: "c1",
		Nodes:       []string{"n1:9000", "n2:9000"},
		CutoffID:    i64(1000),
		TotalRows:   1000,
		Config:      json.RawMessage(`{"name": "` + name + `", "engine": "SummingMergeTree"}`),
		SpecHash:    "h1",
		Applied: map[string]AppliedObject{
			"analytics." + name + "_data": {SQL: "CREATE TABLE x", Server: "CREATE TABLE analytics.x"},
		},
		Shards: []ShardProgress{
			{Shard: 1, Replica: "n1:9000", TotalRows: 600},
			{Shard: 2, Replica: "n2:9000", TotalRows: 400},
		},
	}
}

func TestJobRoundtrip(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t)

	j := newJob("daily")
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	if j.ID == 0 || j.InsertedAt.IsZero() || j.UpdatedAt.IsZero() || j.Status != StatusPending {
		t.Fatalf("CreateJob did not fill id, times, status: %+v", j)
	}
	if err := s.CreateJob(ctx, newJob("daily")); err == nil {
		t.Error("a second job with the same database and name was accepted")
	}

	got, err := s.GetJob(ctx, "analytics", "daily")
	if err != nil {
		t.Fatalf("GetJob: %v", err)
	}
	if got.ID != j.ID || got.Name != "daily" || got.Database != "analytics" || got.SourceTable != "events" ||
		got.TargetTable != "daily_data" || got.Status != StatusPending || got.ClusterName != "c1" ||
		strings.Join(got.Nodes, ",") != "n1:9000,n2:9000" || got.CutoffID == nil || *got.CutoffID != 1000 ||
		got.LastProcessedID != nil || got.TotalRows != 1000 || got.SpecHash != "h1" || got.FenceVerified ||
		got.ErrorMessage != "" || !got.InsertedAt.Equal(j.InsertedAt) {
		t.Errorf("GetJob = %+v, want what was created: %+v", got, j)
	}
	var cfg map[string]string
	if err := json.Unmarshal(got.Config, &cfg); err != nil || cfg["engine"] != "SummingMergeTree" {
		t.Errorf("config = %s (err %v)", got.Config, err)
	}
	if a := got.Applied["analytics.daily_data"]; a.SQL != "CREATE TABLE x" || a.Server != "CREATE TABLE analytics.x" {
		t.Errorf("applied = %+v", got.Applied)
	}
	if len(got.Shards) != 2 || got.Shards[0].Shard != 1 || got.Shards[0].Replica != "n1:9000" ||
		got.Shards[0].TotalRows != 600 || got.Shards[0].Status != StatusPending || got.Shards[1].Shard != 2 {
		t.Errorf("shards = %+v", got.Shards)
	}

	if _, err := s.GetJob(ctx, "analytics", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetJob of a missing job: err = %v, want ErrNotFound", err)
	}

	// Update every mutable field, including back to NULLs.
	before := got.UpdatedAt
	got.Status = StatusFailed
	got.ClusterName = ""
	got.Nodes = nil
	got.CutoffID = nil
	got.TotalRows = 2000
	got.Config = json.RawMessage(`{"v": 2}`)
	got.SpecHash = "h2"
	got.Applied = map[string]AppliedObject{"mv": {SQL: "a", Server: "b"}}
	got.FenceVerified = true
	got.ErrorMessage = "boom"
	got.TargetTable = "daily_v2"
	if err := s.UpdateJob(ctx, got); err != nil {
		t.Fatalf("UpdateJob: %v", err)
	}
	if !got.UpdatedAt.After(before) {
		t.Errorf("UpdateJob did not bump updated_at: %v -> %v", before, got.UpdatedAt)
	}
	again, err := s.GetJob(ctx, "analytics", "daily")
	if err != nil {
		t.Fatal(err)
	}
	if again.Status != StatusFailed || again.ClusterName != "" || len(again.Nodes) != 0 || again.Nodes == nil ||
		again.CutoffID != nil || again.TotalRows != 2000 || string(again.Config) != `{"v": 2}` ||
		again.SpecHash != "h2" || again.Applied["mv"].Server != "b" || len(again.Applied) != 1 ||
		!again.FenceVerified || again.ErrorMessage != "boom" || again.TargetTable != "daily_v2" ||
		!again.UpdatedAt.Equal(got.UpdatedAt) {
		t.Errorf("after UpdateJob: %+v", again)
	}
	var cluster *string
	if err := s.pool.QueryRow(ctx, `SELECT cluster_name FROM mv_jobs WHERE id = $1`, j.ID).Scan(&cluster); err != nil || cluster != nil {
		t.Errorf("cluster_name stored as %v (err %v), want NULL", cluster, err)
	}
	if err := s.UpdateJob(ctx, &Job{ID: -1, Name: "x", Database: "d", Status: StatusPending, Config: json.RawMessage(`{}`)}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateJob of a missing job: err = %v, want ErrNotFound", err)
	}

	if err := s.DeleteJob(ctx, j.ID); err != nil {
		t.Fatalf("DeleteJob: %v", err)
	}
	if _, err := s.GetJob(ctx, "analytics", "daily"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetJob after DeleteJob: err = %v, want ErrNotFound", err)
	}
	var shards int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM mv_job_shards WHERE job_id = $1`, j.ID).Scan(&shards); err != nil || shards != 0 {
		t.Errorf("%d shard rows left after DeleteJob (err %v)", shards, err)
	}
	if err := s.DeleteJob(ctx, j.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteJob: err = %v, want ErrNotFound", err)
	}
}

func TestCreateJobRefusesInvalid(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t)
	for name, j := range map[string]*Job{
		"no config":  {Name: "a", Database: "d", SourceTable: "s", TargetTable: "t"},
		"bad status": {Name: "a", Database: "d", SourceTable: "s", TargetTable: "t", Status: "bogus", Config: json.RawMessage(`{}`)},
		"no name":    {Database: "d", SourceTable: "s", TargetTable: "t", Config: json.RawMessage(`{}`)},
	} {
		if err := s.CreateJob(ctx, j); err == nil {
			t.Errorf("%s: CreateJob accepted %+v", name, j)
		}
	}

	// A shard that fails rolls the whole job back.
	j := newJob("bad_shard")
	j.Shards[1].Status = "bogus"
	if err := s.CreateJob(ctx, j); err == nil || j.ID != 0 {
		t.Errorf("CreateJob with a bad shard: err %v, id %d; want an error and no id", err, j.ID)
	}
	if _, err := s.GetJob(ctx, "analytics", "bad_shard"); !errors.Is(err, ErrNotFound) {
		t.Errorf("job with a bad shard was stored: %v", err)
	}
}

func TestCreateJobWithShardProgress(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t)
	j := newJob("agg")
	j.ProcessedRows = 999 // superseded by the shards
	j.Shards[0].ProcessedRows, j.Shards[0].LastProcessedID = 10, i64(5)
	j.Shards[1].ProcessedRows, j.Shards[1].LastProcessedID = 20, i64(7)
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, "analytics", "agg")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []*Job{j, got} {
		if x.ProcessedRows != 30 || x.LastProcessedID == nil || *x.LastProcessedID != 5 {
			t.Errorf("job aggregate: processed %d, last %s; want 30, 5", x.ProcessedRows, fmtID(x.LastProcessedID))
		}
	}
}

func TestJobJSONView(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t)
	j := newJob("view")
	j.Status = StatusBackfilling
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteBatch(ctx, j.ID, 1, "n1:9000", 500, 300); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, "analytics", "view")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": float64(j.ID), "name": "view", "database": "analytics", "source_table": "events",
		"target_table": "view_data", "status": "backfilling", "cluster_name": "c1",
		"cutoff_id": float64(1000), "total_rows": float64(1000), "processed_rows": float64(300),
		"last_processed_id": nil, // shard 2 has not checkpointed yet
		"progress_percent":  float64(30), "error_message": nil,
	}
	for k, w := range want {
		if g, ok := v[k]; !ok || g != w {
			t.Errorf("%s = %#v (present %v), want %#v", k, g, ok, w)
		}
	}
	if nodes, _ := v["nodes"].([]any); len(nodes) != 2 || nodes[0] != "n1:9000" {
		t.Errorf("nodes = %v", v["nodes"])
	}
	for _, k := range []string{"created_at", "updated_at"} {
		str, _ := v[k].(string)
		ts, err := time.Parse(time.RFC3339, str)
		if err != nil || !strings.HasSuffix(str, "Z") {
			t.Errorf("%s = %q: not RFC 3339 UTC (%v)", k, str, err)
		}
		if d := time.Since(ts); d < -time.Minute || d > time.Minute {
			t.Errorf("%s = %s, not now", k, str)
		}
	}
	if created, _ := time.Parse(time.RFC3339, v["created_at"].(string)); !created.Equal(got.InsertedAt.Truncate(time.Second)) {
		t.Errorf("created_at = %v, want inserted_at %v", created, got.InsertedAt)
	}
	shards, _ := v["shards"].([]any)
	if len(shards) != 2 {
		t.Fatalf("shards = %v", v["shards"])
	}
	sh := shards[0].(map[string]any)
	wantShard := map[string]any{"shard": float64(1), "replica": "n1:9000", "status": "pending",
		"total_rows": float64(600), "processed_rows": float64(300), "last_processed_id": float64(500), "progress_percent": float64(50)}
	for k, w := range wantShard {
		if g, ok := sh[k]; !ok || g != w {
			t.Errorf("shards[0].%s = %#v (present %v), want %#v", k, g, ok, w)
		}
	}
	if len(sh) != len(wantShard) {
		t.Errorf("shards[0] has fields %v, want exactly %v", sh, wantShard)
	}
}

// countingTracer counts the queries a pool sends.
type countingTracer struct{ n atomic.Int64 }

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func TestListJobs(t *testing.T) {
	s, url := openStore(t)
	ctx := testCtx(t)

	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	tracer := &countingTracer{}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	traced := &Store{pool: pool}
	queries := func() int64 {
		before := tracer.n.Load()
		if _, err := traced.ListJobs(ctx); err != nil {
			t.Fatal(err)
		}
		return tracer.n.Load() - before
	}

	if jobs, err := s.ListJobs(ctx); err != nil || len(jobs) != 0 {
		t.Fatalf("ListJobs on an empty store = %v, %v", jobs, err)
	}
	if err := s.CreateJob(ctx, newJob("b")); err != nil {
		t.Fatal(err)
	}
	one := queries()
	for _, name := range []string{"a", "c", "d", "e", "f", "g", "h", "i", "j"} {
		if err := s.CreateJob(ctx, newJob(name)); err != nil {
			t.Fatal(err)
		}
	}
	if ten := queries(); ten != one {
		t.Errorf("ListJobs sent %d queries for 1 job and %d for 10: N+1", one, ten)
	}

	jobs, err := s.ListJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 10 || jobs[0].Name != "a" || jobs[1].Name != "b" || jobs[9].Name != "j" {
		t.Fatalf("ListJobs returned %d jobs, not ordered by name", len(jobs))
	}
	for _, j := range jobs {
		if len(j.Shards) != 2 || j.Shards[0].Shard != 1 || j.Shards[1].Shard != 2 {
			t.Errorf("job %s has shards %+v", j.Name, j.Shards)
		}
	}
}

func shardOf(t *testing.T, s *Store, jobID int64, shard int, replica string) (*Job, ShardProgress) {
	t.Helper()
	var name, db string
	if err := s.pool.QueryRow(testCtx(t), `SELECT name, database FROM mv_jobs WHERE id = $1`, jobID).Scan(&name, &db); err != nil {
		t.Fatal(err)
	}
	j, err := s.GetJob(testCtx(t), db, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range j.Shards {
		if p.Shard == shard && p.Replica == replica {
			return j, p
		}
	}
	t.Fatalf("job %d has no shard %d/%s: %+v", jobID, shard, replica, j.Shards)
	return nil, ShardProgress{}
}

func TestBatches(t *testing.T) {
	s, url := openStore(t)
	ctx := testCtx(t)
	j := &Job{Name: "b", Database: "default", SourceTable: "s", TargetTable: "t", Config: json.RawMessage(`{}`), TotalRows: 300}
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}

	if err := s.BeginBatch(ctx, j.ID+1000, 0, "", 1, 100, "q"); !errors.Is(err, ErrNotFound) {
		t.Errorf("BeginBatch on a missing job: err = %v, want ErrNotFound", err)
	}
	if err := s.CompleteBatch(ctx, j.ID, 0, "", 100, 10); !errors.Is(err, ErrNotFound) {
		t.Errorf("CompleteBatch on a missing shard: err = %v, want ErrNotFound", err)
	}

	// BeginBatch creates the shard row with the marker, visible (committed)
	// to any other session as soon as it returns.
	if err := s.BeginBatch(ctx, j.ID, 0, "", 1, 100, "q-1"); err != nil {
		t.Fatalf("BeginBatch: %v", err)
	}
	other, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	var lo, hi *int64
	var qid *string
	if err := other.QueryRow(ctx, `SELECT inflight_lo, inflight_hi, inflight_query_id FROM mv_job_shards WHERE job_id = $1`, j.ID).
		Scan(&lo, &hi, &qid); err != nil || lo == nil || *lo != 1 || *hi != 100 || *qid != "q-1" {
		t.Fatalf("marker seen by another session: %v %v %v (err %v)", lo, hi, qid, err)
	}
	_, p := shardOf(t, s, j.ID, 0, "")
	if p.Status != StatusBackfilling || p.InflightQueryID != "q-1" || p.LastProcessedID != nil {
		t.Errorf("shard after BeginBatch = %+v", p)
	}

	if err := s.CompleteBatch(ctx, j.ID, 0, "", 100, 90); err != nil {
		t.Fatalf("CompleteBatch: %v", err)
	}
	job, p := shardOf(t, s, j.ID, 0, "")
	if p.InflightLo != nil || p.InflightHi != nil || p.InflightQueryID != "" || p.ProcessedRows != 90 ||
		p.LastProcessedID == nil || *p.LastProcessedID != 100 {
		t.Errorf("shard after CompleteBatch = %+v", p)
	}
	if job.ProcessedRows != 90 || job.LastProcessedID == nil || *job.LastProcessedID != 100 {
		t.Errorf("job after CompleteBatch: processed %d, last %s", job.ProcessedRows, fmtID(job.LastProcessedID))
	}

	// A retry of the same confirmation (commit outcome unknown) counts nothing.
	if err := s.CompleteBatch(ctx, j.ID, 0, "", 100, 90); err != nil {
		t.Fatal(err)
	}
	if job, p = shardOf(t, s, j.ID, 0, ""); p.ProcessedRows != 90 || job.ProcessedRows != 90 {
		t.Errorf("a repeated CompleteBatch counted again: shard %d, job %d", p.ProcessedRows, job.ProcessedRows)
	}

	// A second shard: the job sums the rows and keeps the lowest id every
	// shard has reached.
	if err := s.BeginBatch(ctx, j.ID, 1, "n2", 1, 50, "q-2"); err != nil {
		t.Fatal(err)
	}
	if job, _ = shardOf(t, s, j.ID, 1, "n2"); job.LastProcessedID != nil {
		t.Errorf("job last_processed_id = %d while shard 1 has not checkpointed, want nil", *job.LastProcessedID)
	}
	if err := s.CompleteBatch(ctx, j.ID, 1, "n2", 50, 40); err != nil {
		t.Fatal(err)
	}
	job, _ = shardOf(t, s, j.ID, 1, "n2")
	if job.ProcessedRows != 130 || job.LastProcessedID == nil || *job.LastProcessedID != 50 {
		t.Errorf("job aggregate: processed %d, last %s; want 130, 50", job.ProcessedRows, fmtID(job.LastProcessedID))
	}

	// UpdateJob with the progress it loaded before the batches does not undo them.
	stale := *job
	stale.ProcessedRows, stale.LastProcessedID = 0, nil
	stale.Status = StatusOptimizing
	if err := s.UpdateJob(ctx, &stale); err != nil {
		t.Fatal(err)
	}
	if stale.ProcessedRows != 130 || stale.LastProcessedID == nil || *stale.LastProcessedID != 50 {
		t.Errorf("UpdateJob wrote stale progress: processed %d, last %s", stale.ProcessedRows, fmtID(stale.LastProcessedID))
	}

	// UpsertShard rewrites a shard and the job follows.
	if err := s.UpsertShard(ctx, j.ID, ShardProgress{Shard: 1, Replica: "n2", Status: StatusCompleted, ProcessedRows: 45, LastProcessedID: i64(60)}); err != nil {
		t.Fatal(err)
	}
	if job, p = shardOf(t, s, j.ID, 1, "n2"); p.Status != StatusCompleted || p.InflightHi != nil || job.ProcessedRows != 135 {
		t.Errorf("after UpsertShard: shard %+v, job processed %d", p, job.ProcessedRows)
	}
	if p.InDoubt {
		t.Errorf("a new shard row is in doubt: %+v", p)
	}
	// MarkInDoubt sets in doubt and leaves updated_at alone (while a marker
	// is set, it is when the batch was marked); an upsert does not clear it.
	before := p.UpdatedAt
	if err := s.MarkInDoubt(ctx, j.ID, 1, "n2"); err != nil {
		t.Fatal(err)
	}
	if _, p = shardOf(t, s, j.ID, 1, "n2"); !p.InDoubt || !p.UpdatedAt.Equal(before) {
		t.Errorf("after MarkInDoubt: in doubt %v, updated_at %s (was %s); want in doubt, updated_at unchanged", p.InDoubt, p.UpdatedAt, before)
	}
	p.InDoubt = false
	p.ProcessedRows = 46
	if err := s.UpsertShard(ctx, j.ID, p); err != nil {
		t.Fatal(err)
	}
	if _, p = shardOf(t, s, j.ID, 1, "n2"); !p.InDoubt || p.ProcessedRows != 46 {
		t.Errorf("after an upsert without in doubt: %+v; want it still in doubt, 46 rows", p)
	}
	if err := s.MarkInDoubt(ctx, j.ID, 7, "n9"); !errors.Is(err, ErrNotFound) {
		t.Errorf("MarkInDoubt on a missing shard: err = %v, want ErrNotFound", err)
	}
	if err := s.UpsertShard(ctx, j.ID+1000, ShardProgress{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpsertShard on a missing job: err = %v, want ErrNotFound", err)
	}

	// Restart: without shards, UpdateJob writes the progress it is given.
	if err := s.DeleteShards(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	job.ProcessedRows, job.LastProcessedID = 0, nil
	if err := s.UpdateJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetJob(ctx, "default", "b"); len(got.Shards) != 0 || got.ProcessedRows != 0 || got.LastProcessedID != nil {
		t.Errorf("after DeleteShards and UpdateJob: %+v", got)
	}
}

// Checkpoints of different shards of one job, committed concurrently, must
// all reach the job's aggregate.
func TestCompleteBatchConcurrent(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t)
	j := &Job{Name: "c", Database: "default", SourceTable: "s", TargetTable: "t", Config: json.RawMessage(`{}`)}
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	const shards, batches = 8, 40
	for sh := range shards {
		if err := s.BeginBatch(ctx, j.ID, sh, "", 1, 100, "q"); err != nil {
			t.Fatal(err)
		}
	}
	// Only checkpoints race here, so that each is exposed to the others'
	// uncommitted aggregates.
	var wg sync.WaitGroup
	errs := make(chan error, shards)
	start := make(chan struct{})
	for sh := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for b := 1; b <= batches; b++ {
				if err := s.CompleteBatch(ctx, j.ID, sh, "", int64(b*100), 7); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, "default", "c")
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(shards * batches * 7); got.ProcessedRows != want {
		t.Errorf("job processed_rows = %d, want %d", got.ProcessedRows, want)
	}
	if got.LastProcessedID == nil || *got.LastProcessedID != batches*100 {
		t.Errorf("job last_processed_id = %s, want %d", fmtID(got.LastProcessedID), batches*100)
	}
}

func TestSpecs(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t)
	rec := SpecRecord{Database: "default", Name: "x", Spec: json.RawMessage(`{"name":"x"}`), SpecHash: "h1", Origin: OriginAPI}

	created, err := s.PutSpec(ctx, rec, false)
	if err != nil || !created {
		t.Fatalf("first PutSpec = %v, %v; want created", created, err)
	}
	created, err = s.PutSpec(ctx, rec, false)
	if err != nil || created {
		t.Fatalf("PutSpec of the same hash = %v, %v; want no change, no error", created, err)
	}

	changed := rec
	changed.Spec, changed.SpecHash, changed.Origin = json.RawMessage(`{"name":"x","v":2}`), "h2", OriginFile
	if _, err := s.PutSpec(ctx, changed, false); !errors.Is(err, ErrSpecConflict) {
		t.Fatalf("PutSpec of a different hash: err = %v, want ErrSpecConflict", err)
	}
	if got, err := s.GetSpec(ctx, "default", "x"); err != nil || got.SpecHash != "h1" {
		t.Fatalf("after a refused PutSpec: %+v, %v", got, err)
	}
	created, err = s.PutSpec(ctx, changed, true)
	if err != nil || created {
		t.Fatalf("forced PutSpec = %v, %v", created, err)
	}
	got, err := s.GetSpec(ctx, "default", "x")
	if err != nil {
		t.Fatal(err)
	}
	if got.SpecHash != "h2" || got.Origin != OriginFile || !got.UpdatedAt.After(got.CreatedAt) {
		t.Errorf("after forced PutSpec: %+v", got)
	}
	var spec map[string]any
	if err := json.Unmarshal(got.Spec, &spec); err != nil || spec["v"] != float64(2) {
		t.Errorf("spec = %s (err %v)", got.Spec, err)
	}

	if _, err := s.PutSpec(ctx, SpecRecord{Database: "default", Name: "y", Spec: json.RawMessage(`{}`), SpecHash: "h", Origin: "ftp"}, false); err == nil {
		t.Error("PutSpec accepted origin ftp")
	}
	if _, err := s.PutSpec(ctx, SpecRecord{Database: "a", Name: "z", Spec: json.RawMessage(`{}`), SpecHash: "h", Origin: OriginAPI}, false); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListSpecs(ctx)
	if err != nil || len(list) != 2 || list[0].Database != "a" || list[1].Name != "x" {
		t.Errorf("ListSpecs = %+v, %v", list, err)
	}

	if err := s.DeleteSpec(ctx, "default", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSpec(ctx, "default", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetSpec after DeleteSpec: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSpec(ctx, "default", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteSpec: err = %v, want ErrNotFound", err)
	}
}

// Two writers creating the same new spec at once: one creates it, the other
// sees it (same hash) or conflicts (different hash), never a raw key error.
func TestPutSpecConcurrent(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t)
	const n = 8
	var wg sync.WaitGroup
	var createdN, conflicts atomic.Int64
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := SpecRecord{Database: "default", Name: "race", Spec: json.RawMessage(`{}`), SpecHash: fmt.Sprint("h", i%2), Origin: OriginAPI}
			created, err := s.PutSpec(ctx, rec, false)
			switch {
			case errors.Is(err, ErrSpecConflict):
				conflicts.Add(1)
			case err != nil:
				errs <- err
			case created:
				createdN.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if createdN.Load() != 1 || conflicts.Load() != n/2 {
		t.Errorf("created %d times with %d conflicts, want 1 and %d", createdN.Load(), conflicts.Load(), n/2)
	}
}
