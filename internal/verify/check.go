package verify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/hashicorp/go-hclog"

	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
)

// Verifier runs verifications.
type Verifier struct {
	Conn *planner.Connector
	Opts Options
	Log  hclog.Logger
}

// Verify compares the target of t with its query over the whole source. An
// error means the comparison could not be made; differences are in the
// report.
func (v *Verifier) Verify(ctx context.Context, t *Target) (*Report, error) {
	start := time.Now()
	opts := v.Opts.withDefaults()
	log := v.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	mv := sqlgen.MV{Spec: t.Spec}
	sh, err := mv.Shape()
	if err != nil {
		return nil, fmt.Errorf("%w: %s.%s: %v", ErrNotVerifiable, t.Spec.Database, t.Name, err)
	}
	topo, err := v.Conn.Topology(ctx, t.Cluster)
	if err != nil {
		return nil, err
	}
	nodes, err := scopeNodes(ctx, topo, mv)
	if err != nil {
		return nil, fmt.Errorf("%s.%s: %w", t.Spec.Database, t.Name, err)
	}
	rep := &Report{
		Database: t.Spec.Database, Name: t.Name, Version: t.Version,
		Target: t.Spec.TargetTable, Source: t.Spec.SourceTable,
		Merge: sh.Merge, Keys: sh.Keys, Values: sh.Values, NotCompared: sh.NotCompared,
		Differences: []Difference{},
	}
	if rep.NotCompared == nil {
		rep.NotCompared = []string{}
	}
	scopes := make([]Scope, len(nodes))
	diffs := make([][]Difference, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &checker{n: n.Node, replicated: n.replicated, mv: mv, sh: sh, opts: opts, log: log.With("node", n.Addr, "shard", n.Shard)}
			scopes[i], diffs[i], errs[i] = c.run(ctx)
		}()
	}
	wg.Wait()
	for i := range nodes {
		if errs[i] != nil {
			return nil, fmt.Errorf("verify %s.%s on %s: %w", t.Spec.Database, t.Name, nodes[i].Addr, errs[i])
		}
		s := scopes[i]
		rep.Scopes = append(rep.Scopes, s)
		rep.Groups += s.Groups
		rep.Unchecked += s.Unchecked
		for _, d := range diffs[i] {
			switch d.Kind {
			case KindMissing:
				rep.Missing++
			case KindExtra:
				rep.Extra++
			default:
				rep.Differ++
			}
			rep.Differences = append(rep.Differences, d)
		}
	}
	inTarget := uint64(rep.Differ + rep.Extra)
	if rep.Groups > inTarget {
		rep.Equal = rep.Groups - inTarget
	}
	rep.OK = rep.Count() == 0
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// scopeNodes picks the nodes to compare on: the single node; on a cluster
// one answering replica per shard when the source replicates (a replica
// holds its shard's source and target), else every node (each holds its
// own). It checks that the source and the target exist there.
func scopeNodes(ctx context.Context, topo *planner.Topology, mv sqlgen.MV) ([]scope, error) {
	var out []scope
	for _, shard := range topo.Shards() {
		var up []*planner.Node
		var down []string
		for _, n := range shard {
			if n.Err != nil {
				down = append(down, n.Addr)
			} else {
				up = append(up, n)
			}
		}
		if len(up) == 0 {
			return nil, fmt.Errorf("%w: no replica of shard %d answers (%s)", ErrNotVerifiable, shard[0].Shard, strings.Join(down, ", "))
		}
		engines := map[string]string{}
		lines, err := chclient.Strings(ctx, up[0].Conn, mv.VerifyTables())
		if err != nil {
			return nil, fmt.Errorf("read system.tables on %s: %w", up[0].Addr, err)
		}
		for _, l := range lines {
			name, engine, _ := strings.Cut(l, " ")
			engines[name] = engine
		}
		for _, tbl := range []string{mv.Spec.SourceTable, mv.Spec.TargetTable} {
			if engines[tbl] == "" {
				return nil, fmt.Errorf("%w: %s.%s does not exist on %s", ErrNotVerifiable, mv.Spec.Database, tbl, up[0].Addr)
			}
		}
		if topo.Cluster == "" || strings.HasPrefix(engines[mv.Spec.SourceTable], "Replicated") {
			out = append(out, scope{Node: up[0], replicated: strings.HasPrefix(engines[mv.Spec.TargetTable], "Replicated")})
			continue
		}
		if len(down) > 0 {
			return nil, fmt.Errorf("%w: the source does not replicate, so every node holds its own rows, and %s does not answer", ErrNotVerifiable, strings.Join(down, ", "))
		}
		for _, n := range up {
			out = append(out, scope{Node: n})
		}
	}
	return out, nil
}

// scope is a node to compare on; replicated when its target replicates.
type scope struct {
	*planner.Node
	replicated bool
}

// checker verifies one scope.
type checker struct {
	n          *planner.Node
	replicated bool
	mv         sqlgen.MV
	sh         *sqlgen.VerifyShape
	opts       Options
	log        hclog.Logger
}

// track is what is known of one differing group across checks.
type track struct {
	last       Difference
	diff, same int // checks in a row that differed, matched
	// seen counts the signatures of the current run of differing checks,
	// and latest keeps the last observation of each.
	seen   map[string]int
	latest map[string]Difference
}

func newTrack(d Difference) *track {
	t := &track{seen: map[string]int{}, latest: map[string]Difference{}}
	t.differs(d)
	return t
}

func (t *track) differs(d Difference) {
	sig := signature(d)
	t.last, t.diff, t.same = d, t.diff+1, 0
	t.seen[sig]++
	t.latest[sig] = d
}

func (t *track) matches() {
	t.diff, t.same = 0, t.same+1
	clear(t.seen)
	clear(t.latest)
}

// modal is the signature seen most often in the current run of differing
// checks, with how often, and its latest observation.
func (t *track) modal() (int, Difference) {
	best, n := "", 0
	for sig, c := range t.seen {
		if c > n || (c == n && sig < best) {
			best, n = sig, c
		}
	}
	return n, t.latest[best]
}

// signature is what stays the same across checks for a real difference
// while rows keep arriving: the difference of each numeric value (a row
// too many in a sum stays a row too many), else both values.
func signature(d Difference) string {
	var b strings.Builder
	b.WriteString(d.Kind)
	for i := range max(len(d.Target), len(d.Expected)) {
		var t, e string
		if i < len(d.Target) {
			t = d.Target[i]
		}
		if i < len(d.Expected) {
			e = d.Expected[i]
		}
		// Exact decimal arithmetic: a float's rounding would make the
		// same difference of other sums print differently.
		tr, ok1 := new(big.Rat).SetString(t)
		er, ok2 := new(big.Rat).SetString(e)
		if d.Kind == KindDiffers && ok1 && ok2 {
			b.WriteString("|" + new(big.Rat).Sub(tr, er).RatString())
		} else {
			fmt.Fprintf(&b, "|%q~%q", t, e)
		}
	}
	return b.String()
}

func (c *checker) run(ctx context.Context) (Scope, []Difference, error) {
	sc := Scope{Shard: c.n.Shard, Node: c.n.Addr}
	if c.replicated {
		// A replica compares what it holds: let it fetch what it lags.
		for _, t := range []string{c.mv.Spec.SourceTable, c.mv.Spec.TargetTable} {
			if err := c.n.Conn.Exec(ctx, c.mv.SyncReplica(t)); err != nil {
				return sc, nil, fmt.Errorf("sync replica %s: %w", t, err)
			}
		}
	}
	before, err := c.marks(ctx)
	if err != nil {
		return sc, nil, err
	}
	first, total, err := c.check(ctx, nil)
	if err != nil {
		return sc, nil, err
	}
	sc.Checks = 1
	after, err := c.marks(ctx)
	if err != nil {
		return sc, nil, err
	}
	sc.Quiet = before.quiet(after)
	sc.Unchecked = total - len(first)
	var confirmed []Difference
	if sc.Quiet {
		// Nothing was written during the check: it is exact.
		confirmed = first
	} else {
		tracks := map[string]*track{}
		for _, d := range first {
			tracks[keyOf(d.Key)] = newTrack(d)
		}
		for round := 1; len(tracks) > 0 && round <= c.opts.MaxRounds; round++ {
			select {
			case <-ctx.Done():
				return sc, nil, ctx.Err()
			case <-time.After(c.opts.Delay):
			}
			var filter sqlgen.VerifyFilter
			for _, t := range tracks {
				filter = append(filter, t.last.Key)
			}
			found, _, err := c.check(ctx, filter)
			if err != nil {
				return sc, nil, err
			}
			sc.Checks++
			seen := map[string]Difference{}
			for _, d := range found {
				seen[keyOf(d.Key)] = d
			}
			for k, t := range tracks {
				if d, ok := seen[k]; ok {
					t.differs(d)
				} else {
					t.matches()
				}
				// Rows in flight change from one check to the next; a
				// real difference stays the same in almost every check.
				n, d := t.modal()
				switch {
				case t.diff >= c.opts.ConfirmRounds && n >= c.opts.ConfirmRounds-1:
					confirmed = append(confirmed, d)
					delete(tracks, k)
				case t.same >= c.opts.ClearRounds:
					sc.Transient++
					delete(tracks, k)
				}
			}
		}
		for _, t := range tracks {
			_, d := t.modal()
			if d.Key == nil {
				d = t.last
			}
			d.Unstable = true
			confirmed = append(confirmed, d)
		}
		if sc.Transient > 0 || len(confirmed) > 0 {
			c.log.Debug("re-checked differing groups", "first", len(first), "transient", sc.Transient, "confirmed", len(confirmed), "checks", sc.Checks)
		}
	}
	sort.Slice(confirmed, func(i, k int) bool { return keyOf(confirmed[i].Key) < keyOf(confirmed[k].Key) })
	sc.Differences = len(confirmed) + sc.Unchecked
	groups, err := chclient.Strings(ctx, c.n.Conn, c.mv.VerifyGroups(c.sh))
	if err != nil {
		return sc, nil, fmt.Errorf("count the target's groups: %w", err)
	}
	if len(groups) == 1 {
		fmt.Sscan(groups[0], &sc.Groups)
	}
	if confirmed == nil {
		confirmed = []Difference{}
	}
	return sc, confirmed, nil
}

func keyOf(k []string) string { return strings.Join(k, "\x00") }

// check runs one comparison and returns the differing groups it returned
// and how many differ in all.
func (c *checker) check(ctx context.Context, filter sqlgen.VerifyFilter) ([]Difference, int, error) {
	q, err := c.mv.VerifyQuery(c.sh, filter, c.opts.Limit)
	if err != nil {
		return nil, 0, err
	}
	var before uint64
	qctx := clickhouse.Context(ctx,
		clickhouse.WithQueryID(queryID()),
		clickhouse.WithProfileInfo(func(p *clickhouse.ProfileInfo) {
			if p.CalculatedRowsBeforeLimit && p.RowsBeforeLimit > before {
				before = p.RowsBeforeLimit
			}
		}))
	rows, err := c.n.Conn.Query(qctx, q)
	if err != nil {
		return nil, 0, fmt.Errorf("compare %s with its query: %w", c.mv.Spec.TargetTable, err)
	}
	defer rows.Close()
	nk, nv := len(c.sh.Keys), len(c.sh.Values)
	cols := make([]string, c.sh.Columns())
	dest := make([]any, len(cols))
	for i := range cols {
		dest[i] = &cols[i]
	}
	var out []Difference
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, 0, err
		}
		d := Difference{Shard: c.n.Shard, Node: c.n.Addr, Key: append([]string{}, cols[:nk]...)}
		inT, inE := cols[nk] != "0", cols[nk+1] != "0"
		var t, e []string
		for i := 0; i < nv; i++ {
			t = append(t, cols[nk+2+2*i])
			e = append(e, cols[nk+3+2*i])
		}
		switch {
		case inT && inE:
			d.Kind, d.Target, d.Expected = KindDiffers, t, e
		case inT:
			d.Kind, d.Target = KindExtra, t
		default:
			d.Kind, d.Expected = KindMissing, e
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("compare %s with its query: %w", c.mv.Spec.TargetTable, err)
	}
	return out, max(int(before), len(out)), nil
}

// marks is what changes when something is written (see sqlgen.VerifyMarks).
type marks struct {
	tables  string
	inserts bool
	queued  bool // replicated: something is on its way to this replica (see sqlgen.VerifyMarks)
}

func (c *checker) marks(ctx context.Context) (marks, error) {
	lines, err := chclient.Strings(ctx, c.n.Conn, c.mv.VerifyMarks(c.replicated))
	if err != nil {
		return marks{}, fmt.Errorf("read block numbers: %w", err)
	}
	sort.Strings(lines)
	var m marks
	var tables []string
	for _, l := range lines {
		if n, ok := strings.CutPrefix(l, "inserts "); ok {
			m.inserts = n != "0"
			continue
		}
		if n, ok := cutAny(l, "queue ", "unpulled ", "fresh "); ok {
			m.queued = m.queued || n != "0"
			continue
		}
		tables = append(tables, l)
	}
	m.tables = strings.Join(tables, ";")
	return m, nil
}

// cutAny is strings.CutPrefix with the first of prefixes that l has.
func cutAny(l string, prefixes ...string) (string, bool) {
	for _, p := range prefixes {
		if n, ok := strings.CutPrefix(l, p); ok {
			return n, true
		}
	}
	return "", false
}

func (m marks) quiet(after marks) bool {
	return !m.inserts && !after.inserts && !m.queued && !after.queued && m.tables == after.tables
}

func queryID() string {
	var b [8]byte
	rand.Read(b[:])
	return "shirath-verify-" + hex.EncodeToString(b[:])
}
