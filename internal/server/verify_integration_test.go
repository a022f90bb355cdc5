//go:build integration

package server_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/server"
	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

// TestVerifyAPI: POST /api/mv/{name}/verify on both single nodes, every
// answer checked against the OpenAPI document: 404 for an unknown MV, 401
// without the token; on the completed design example, a report with every
// group equal and verified_at set; after one row is inserted into the
// target by hand, a report naming that group (ok false), last_verify not
// ok and verified_at kept.
func TestVerifyAPI(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		servertest.Products(t, conn, db, 100_000)
		const token = "verify-token"
		d := servertest.Start(t, bin, servertest.Env{CHAddr: s.Addr, PGURL: env.PostgresDB(t), Token: token})
		key := db + ".products_by_category"
		c := d.Client(token)
		ctx := servertest.Ctx(t, 5*time.Minute)

		var apiErr *server.Error
		if _, _, err := c.Verify(ctx, db+".nosuch"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
			t.Fatalf("verify of an unknown MV: %v, want 404", err)
		}
		if _, _, err := d.Client("").Verify(ctx, key); !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
			t.Fatalf("verify without the token: %v, want 401", err)
		}
		if r := do(t, "POST", d.URL+"/api/mv", token, designBody(db)); r.status != http.StatusCreated {
			t.Fatalf("POST /api/mv: %d %s", r.status, r.body)
		}
		servertest.WaitFor(t, c, key, 5*time.Minute, func(mv *server.MV) bool { return mv.Status == "completed" })

		rep, mv, err := c.Verify(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK || rep.Groups != 13 || rep.Equal != 13 || len(rep.Differences) != 0 {
			t.Fatalf("verify of a correct target: ok %v, %d groups, %d equal, %v", rep.OK, rep.Groups, rep.Equal, rep.Differences)
		}
		if mv.VerifiedAt == nil || mv.LastVerify == nil || !mv.LastVerify.OK || mv.LastVerify.Groups != 13 {
			t.Fatalf("after a clean verify: verified_at %v, last_verify %+v", mv.VerifiedAt, mv.LastVerify)
		}
		verifiedAt := *mv.VerifiedAt

		if err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s.products_by_category_data SELECT 'cat3', toUInt64(1), toDecimal64(7, 2)", db)); err != nil {
			t.Fatal(err)
		}
		rep, mv, err = c.Verify(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK || rep.Count() != 1 || len(rep.Differences) != 1 || rep.Differences[0].Key[0] != "cat3" || rep.Differences[0].Kind != "differs" {
			t.Fatalf("verify with a planted row: ok %v, %d differences %+v, want cat3 alone", rep.OK, rep.Count(), rep.Differences)
		}
		if mv.VerifiedAt == nil || *mv.VerifiedAt != verifiedAt || mv.LastVerify == nil || mv.LastVerify.OK || mv.LastVerify.Differences != 1 {
			t.Fatalf("after a failed verify: verified_at %v (want %s kept), last_verify %+v", mv.VerifiedAt, verifiedAt, mv.LastVerify)
		}
	})
}
