//go:build integration

package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/server"
	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

// TestPrune: the daemon drops an MV only with --prune, only when it loaded
// the MV's spec file itself and the file was then removed, and never an MV
// protected by prevent_destroy.
func TestPrune(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		servertest.Products(t, conn, db, 20_000)
		dir := t.TempDir()
		spec := func(name, extra string) string {
			p := filepath.Join(dir, name+".yaml")
			body := fmt.Sprintf(`name: %s
database: %s
source_table: products
engine: SummingMergeTree()
order_by: [category]
columns:
  - {name: category, type: String}
  - {name: cnt, type: UInt64}
select_query: SELECT category, count() AS cnt FROM {source_table} GROUP BY category
%s`, name, db, extra)
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
		pg := env.PostgresDB(t)
		args := []string{"--specs", dir, "--scan-interval", "300ms", "--backoff-base", "300ms", "--backoff-max", "2s"}
		completed := func(c *server.Client, key string) {
			servertest.WaitFor(t, c, key, 2*time.Minute, func(mv *server.MV) bool { return mv.Status == "completed" })
		}

		// Without --prune: a removed spec file drops nothing.
		kept := spec("kept", "")
		d := servertest.Start(t, bin, servertest.Env{CHAddr: s.Addr, PGURL: pg}, args...)
		completed(d.Client(""), db+".kept")
		os.Remove(kept)
		time.Sleep(2 * time.Second)
		if !tableExists(t, conn, db, "kept") {
			t.Fatal("without --prune the daemon dropped an MV whose spec file was removed")
		}
		if err := d.Stop(); err != nil {
			t.Fatal(err)
		}
		s.Settle(t)

		// With --prune: kept's file was removed before this daemon started:
		// it never loaded it, so it stays.
		gone := spec("gone", "")
		guarded := spec("guarded", "prevent_destroy: true\n")
		d = servertest.Start(t, bin, servertest.Env{CHAddr: s.Addr, PGURL: pg}, append(args, "--prune")...)
		c := d.Client("")
		completed(c, db+".gone")
		completed(c, db+".guarded")
		os.Remove(gone)
		os.Remove(guarded)
		deadline := time.Now().Add(time.Minute)
		for tableExists(t, conn, db, "gone") || tableExists(t, conn, db, "gone_data") {
			if time.Now().After(deadline) {
				t.Fatalf("--prune did not drop gone after its spec file was removed:\n%s", d.Log(4000))
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		if !tableExists(t, conn, db, "guarded") || !tableExists(t, conn, db, "kept") {
			t.Fatalf("--prune dropped a protected MV or one whose file it never loaded:\n%s", d.Log(4000))
		}
		if !strings.Contains(d.Log(100000), "prevent_destroy") {
			t.Fatalf("the refused prune of guarded is not reported:\n%s", d.Log(4000))
		}
	})
}
