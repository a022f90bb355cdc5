//go:build integration

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
	"github.com/shirath/shirath/planner"
)

// TestPlanFormats runs plan with each output format against the servers:
// --json and --format json print the same document, and --format markdown
// prints the markdown view of that plan and nothing else, also with -out.
func TestPlanFormats(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		servertest.Products(t, conn, db, 1000)
		dir := t.TempDir()
		spec := filepath.Join(dir, "by_cat.yaml")
		if err := os.WriteFile(spec, []byte(specYAML("by_cat", db, "SummingMergeTree()")), 0o644); err != nil {
			t.Fatal(err)
		}
		g := []string{"--clickhouse", s.Addr, "--postgres", env.PostgresDB(t)}
		plan := func(args ...string) (string, int) {
			t.Helper()
			var out, errb bytes.Buffer
			code := run(append(append([]string{"plan"}, args...), append(g, spec)...), os.Stdin, &out, &errb)
			if errb.Len() > 0 {
				t.Logf("stderr: %s", errb.String())
			}
			return out.String(), code
		}

		asJSON, code := plan("--json", "-detailed-exitcode")
		if code != 2 {
			t.Fatalf("plan --json -detailed-exitcode: exit %d\n%s", code, asJSON)
		}
		if formatJSON, code := plan("--format", "json", "-detailed-exitcode"); code != 2 || formatJSON != asJSON {
			t.Fatalf("plan --format json: exit %d, and it differs from --json:\n%s\n---\n%s", code, formatJSON, asJSON)
		}
		var p planner.Plan
		if err := json.Unmarshal([]byte(asJSON), &p); err != nil {
			t.Fatalf("plan --json: %v\n%s", err, asJSON)
		}
		var want bytes.Buffer
		renderMarkdown(&want, &p)

		saved := filepath.Join(dir, "by_cat.plan")
		md, code := plan("--format", "markdown", "-detailed-exitcode", "-out", saved)
		if code != 2 || md != want.String() {
			t.Fatalf("plan --format markdown: exit %d\n%s\n--- want the markdown view of the JSON plan:\n%s", code, md, want.String())
		}
		if !strings.HasPrefix(md, "**Plan:** 1 to create, 0 to change, 0 to destroy.\n") {
			t.Errorf("markdown plan: %s", md)
		}
		if _, err := os.Stat(saved); err != nil {
			t.Errorf("plan -out with markdown: %v", err)
		}
		human, _ := plan("-out", saved)
		if !strings.Contains(human, "Saved the plan to "+saved) {
			t.Errorf("human plan -out:\n%s", human)
		}
	})
}
