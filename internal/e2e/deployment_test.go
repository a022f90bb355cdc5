//go:build integration

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

// TestJobStoreSharedByTwoDeployments: one PostgreSQL job store, two
// ClickHouse servers, an MV of the same database and name on each. Each
// deployment sees only its own job: a plan against the second server does
// not take the first's job for its own, -destroy there proposes only its own
// MV, and a job left by a deployment that the connected server does not know
// (a cluster it has no trace of) holds up neither plan nor the daemon.
func TestJobStoreSharedByTwoDeployments(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	servers := env.Singles(t)
	a := newFixture(t, servers[0])
	// The second server gets a database of the same name, and shares the
	// job store and the spec directory.
	connB := servers[1].Conn(t)
	if err := connB.Exec(context.Background(), fmt.Sprintf("CREATE DATABASE %s ENGINE = Atomic", a.db)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { connB.Exec(context.Background(), "DROP DATABASE IF EXISTS "+a.db+" SYNC") })
	b := &fixture{t: t, env: env, ch: connB, db: a.db, pg: a.pg, dir: a.dir, addr: servers[1].Addr, server: servers[1]}

	for _, f := range []*fixture{a, b} {
		f.createProducts(50_000)
	}
	a.writeSpec("by_category", summingSpec)
	a.mustRun("apply", "--auto-approve", a.dir)

	// B has no job of its own: its plan creates the MV (the job of A is not
	// B's, and B's objects do not exist).
	p := b.run("plan", "--detailed-exitcode", b.dir)
	if p.code != 2 || !strings.Contains(p.stdout, "Plan: 1 to create, 0 to change, 0 to destroy.") {
		t.Fatalf("plan on the second server: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}
	b.mustRun("apply", "--auto-approve", b.dir)
	b.assertSummingExact()
	var jobs int
	if err := a.pgRow("SELECT count(DISTINCT deployment) FROM mv_jobs WHERE name = 'by_category' AND deployment <> ''", nil, &jobs); err != nil || jobs != 2 {
		t.Fatalf("jobs of two deployments recorded: %d (%v), want 2", jobs, err)
	}

	// A job of a deployment that neither server knows.
	if err := a.pgRow(`INSERT INTO mv_jobs (name, database, source_table, target_table, status, cluster_name, config, deployment)
		VALUES ('ghost', $1, 'products', 'ghost_data', 'completed', 'ghost_cluster', '{}', 'cluster:ghost_cluster[10.0.0.1:9000]') RETURNING 1`,
		[]any{a.db}, new(int)); err != nil {
		t.Fatal(err)
	}

	// -destroy on B, with a directory that no longer holds by_category:
	// only B's MV is proposed, and only B's is dropped.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "other.yaml"), []byte("database: "+a.db+"\n"+strings.ReplaceAll(summingSpec, "name: by_category", "name: other")), 0o644); err != nil {
		t.Fatal(err)
	}
	p = b.run("plan", "-destroy", other)
	if p.code != 0 || !strings.Contains(p.stdout, "1 to destroy") || strings.Contains(p.stdout, "ghost") {
		t.Fatalf("plan -destroy on the second server: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}
	b.mustRun("apply", "-destroy", "--auto-approve", other)
	if n := b.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE 'by_category%'"); n != "0" {
		t.Fatalf("the second server kept %s objects of by_category after its destroy", n)
	}
	if n := a.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE 'by_category%'"); n != "2" {
		t.Fatalf("the destroy on the second server touched the first: %s objects of by_category left there, want 2", n)
	}
	if p := a.run("plan", "--detailed-exitcode", a.dir); p.code != 0 || !strings.Contains(p.stdout, "No changes") {
		t.Fatalf("plan on the first server after the second's destroy: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}

	// The daemon on B reconciles B's specs although the store holds a job
	// of a cluster B does not know.
	d := servertest.Start(t, binary, servertest.Env{CHAddr: b.addr, PGURL: b.pg}, "--specs", a.dir)
	defer d.Stop()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var st string
		err := b.pgRow("SELECT status FROM mv_jobs WHERE name = 'by_category' AND deployment LIKE 'node:%' AND status = 'completed' ORDER BY id DESC LIMIT 1", nil, &st)
		if err == nil {
			var n int
			if err := b.pgRow("SELECT count(*) FROM mv_jobs WHERE name = 'by_category' AND status = 'completed'", nil, &n); err == nil && n == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon on the second server did not rebuild by_category:\n%s", d.Log(4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.assertSummingExact()
}
