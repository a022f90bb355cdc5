package executor

import (
	"context"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/state"
)

// Crash points around every statement and commit. In test builds (tag
// crashpoints) every ClickHouse statement the executor sends and every job
// store write it makes passes a crash point before it is sent and one after
// it returned, named
//
//	before:STEP/ACTION   after:STEP/ACTION
//
// STEP is the step of the apply that sends it (set on the context with
// withStep: fence, rate-sample, fence-check, wait, backfill, optimize,
// swap-switched, destroy, ...), ACTION what the statement does to which
// object (create-target, drop-mv, insert-target, read-source,
// read-processes, optimize-target, rename-readers-target) or, for the job
// store, commit:WHAT (commit:progress, commit:batch-marker,
// commit:job-waiting). They are placed centrally, by wrapping the nodes'
// connections and the job store for one run, so a new statement has its
// points without anyone adding them. Release builds skip all of it
// (crashPointsOn is a constant false there).

type stepKey struct{}

// withStep names the step of the apply that the statements and commits
// made with ctx belong to.
func withStep(ctx context.Context, step string) context.Context {
	if !crashPointsOn {
		return ctx
	}
	return context.WithValue(ctx, stepKey{}, step)
}

func stepOf(ctx context.Context) string {
	if s, ok := ctx.Value(stepKey{}).(string); ok {
		return s
	}
	return "apply"
}

// around runs f between the points before:STEP/action and after:STEP/action.
// A failed f passes no after point: the process goes on to handle the error.
func around(ctx context.Context, action string, f func() error) error {
	if !crashPointsOn {
		return f()
	}
	name := stepOf(ctx) + "/" + action
	crashPoint("before:" + name)
	if err := f(); err != nil {
		return err
	}
	crashPoint("after:" + name)
	return nil
}

// instrument gives the run its own copy of the topology, whose connections
// pass crash points around each statement. Release builds keep the
// topology as it is.
func (r *run) instrument() {
	if !crashPointsOn {
		return
	}
	t := *r.topo
	t.Nodes = make([]*planner.Node, len(r.topo.Nodes))
	for i, n := range r.topo.Nodes {
		c := *n
		if c.Conn != nil {
			c.Conn = pointConn{Conn: n.Conn, r: r}
		}
		t.Nodes[i] = &c
	}
	r.topo = &t
}

// pointConn passes crash points around each statement sent to a node.
type pointConn struct {
	driver.Conn
	r *run
}

func (c pointConn) Exec(ctx context.Context, q string, args ...any) error {
	return around(ctx, c.r.action(q), func() error { return c.Conn.Exec(ctx, q, args...) })
}

func (c pointConn) Query(ctx context.Context, q string, args ...any) (rows driver.Rows, err error) {
	err = around(ctx, c.r.action(q), func() error { rows, err = c.Conn.Query(ctx, q, args...); return err })
	return rows, err
}

func (c pointConn) QueryRow(ctx context.Context, q string, args ...any) (row driver.Row) {
	around(ctx, c.r.action(q), func() error { row = c.Conn.QueryRow(ctx, q, args...); return row.Err() })
	return row
}

func (c pointConn) Select(ctx context.Context, dest any, q string, args ...any) error {
	return around(ctx, c.r.action(q), func() error { return c.Conn.Select(ctx, dest, q, args...) })
}

var (
	stmtVerb  = regexp.MustCompile(`(?i)^\s*(CREATE MATERIALIZED VIEW|CREATE TABLE|DROP TABLE|RENAME TABLE|EXCHANGE TABLES|OPTIMIZE TABLE|TRUNCATE TABLE|ALTER TABLE|INSERT INTO|SYSTEM SYNC REPLICA|SYSTEM FLUSH LOGS|SELECT)\b`)
	stmtTable = regexp.MustCompile("`[^`]*`\\.`([^`]*)`")
	fromTable = regexp.MustCompile("(?i)\\bFROM\\s+(?:system\\.(\\w+)|`[^`]*`\\.`([^`]*)`)")
	alterWhat = regexp.MustCompile(`(?i)\b(MOVE PARTITION|MODIFY QUERY|MODIFY REFRESH)\b`)
)

// action names what a statement does, to which of the run's objects:
// create-target, drop-mv, insert-stage, read-source, read-processes...
func (r *run) action(q string) string {
	m := stmtVerb.FindStringSubmatch(q)
	if m == nil {
		f := strings.Fields(q)
		if len(f) == 0 {
			return "empty"
		}
		return strings.ToLower(f[0])
	}
	verb := strings.ToUpper(m[1])
	switch verb {
	case "SYSTEM FLUSH LOGS":
		return "flush-logs"
	case "SELECT":
		if t := fromTable.FindStringSubmatch(q); t != nil {
			if t[1] != "" {
				return "read-" + strings.ToLower(t[1])
			}
			return "read-" + r.role(t[2])
		}
		return "read"
	}
	name := ""
	if t := stmtTable.FindStringSubmatch(q[len(m[0]):]); t != nil {
		name = r.role(t[1])
	}
	switch verb {
	case "CREATE MATERIALIZED VIEW", "CREATE TABLE":
		return "create-" + name
	case "ALTER TABLE":
		if a := alterWhat.FindString(q); a != "" {
			return strings.ToLower(strings.ReplaceAll(a, " ", "-")) + "-" + name
		}
		return "alter-" + name
	case "SYSTEM SYNC REPLICA":
		return "sync-replica-" + name
	}
	return strings.ToLower(strings.Fields(verb)[0]) + "-" + name
}

// role names a table by what it is to this run: mv, target, dist, stage and
// source for the version being built; readers-target, readers-dist, next
// and prev for the names readers use during a change; otherwise the name
// with the MV's name written {name}.
func (r *run) role(table string) string {
	if r.c.Spec != nil {
		if table == r.c.Spec.SourceTable {
			return "source"
		}
	}
	s := r.mv.Spec
	if s != nil {
		switch table {
		case s.Name:
			return "mv"
		case s.TargetTable:
			return "target"
		case s.DistributedTable:
			return "dist"
		case r.mv.StageTable():
			return "stage"
		}
	}
	if c := r.c.Spec; c != nil && s != nil && c.TargetTable != s.TargetTable {
		switch table {
		case c.Name:
			return "readers-mv"
		case c.TargetTable:
			return "readers-target"
		case c.DistributedTable:
			return "readers-dist"
		case sqlgen.NextName(c.TargetTable):
			return "next"
		case sqlgen.PrevName(c.TargetTable):
			return "prev"
		case sqlgen.PrevName(c.DistributedTable):
			return "prev-dist"
		}
	}
	if r.c.Name != "" && strings.Contains(table, r.c.Name) {
		return strings.Replace(table, r.c.Name, "{name}", 1)
	}
	return table
}

// pointStore passes crash points around each write to the job store:
// before:STEP/commit:WHAT and after:STEP/commit:WHAT. The executor's store
// is wrapped in it once, in test builds (setDefaults).
type pointStore struct{ Store }

func (s pointStore) CreateJob(ctx context.Context, j *state.Job) error {
	return around(ctx, "commit:create-job", func() error { return s.Store.CreateJob(ctx, j) })
}

func (s pointStore) UpdateJob(ctx context.Context, j *state.Job) error {
	return around(ctx, "commit:job-"+string(j.Status), func() error { return s.Store.UpdateJob(ctx, j) })
}

func (s pointStore) DeleteJob(ctx context.Context, id int64) error {
	return around(ctx, "commit:delete-job", func() error { return s.Store.DeleteJob(ctx, id) })
}

func (s pointStore) UpsertShard(ctx context.Context, jobID int64, p state.ShardProgress) error {
	return around(ctx, "commit:shard-"+string(p.Status), func() error { return s.Store.UpsertShard(ctx, jobID, p) })
}

func (s pointStore) DeleteShards(ctx context.Context, jobID int64) error {
	return around(ctx, "commit:delete-shards", func() error { return s.Store.DeleteShards(ctx, jobID) })
}

func (s pointStore) BeginBatch(ctx context.Context, jobID int64, shard int, replica string, lo, hi int64, queryID string) error {
	what := "commit:batch-marker"
	if strings.HasSuffix(queryID, stagedMarker) {
		what = "commit:batch-staged"
	}
	return around(ctx, what, func() error { return s.Store.BeginBatch(ctx, jobID, shard, replica, lo, hi, queryID) })
}

func (s pointStore) MarkInDoubt(ctx context.Context, jobID int64, shard int, replica string) error {
	return around(ctx, "commit:in-doubt", func() error { return s.Store.MarkInDoubt(ctx, jobID, shard, replica) })
}

func (s pointStore) CompleteBatch(ctx context.Context, jobID int64, shard int, replica string, hi int64, rows int64) error {
	return around(ctx, "commit:progress", func() error { return s.Store.CompleteBatch(ctx, jobID, shard, replica, hi, rows) })
}

func (s pointStore) Lock(ctx context.Context, key, holder string, wait bool, onWait func(string, time.Time)) (unlock func(), err error) {
	err = around(ctx, "commit:lock", func() error { unlock, err = s.Store.Lock(ctx, key, holder, wait, onWait); return err })
	return unlock, err
}
