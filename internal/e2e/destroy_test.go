//go:build integration

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPreventDestroy: an MV whose spec sets prevent_destroy cannot be
// dropped by a plan, by `mv drop`, nor once its spec is removed; turning the
// flag off is applied (recorded) first, and then the destroy goes through.
func TestPreventDestroy(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		f.createProducts(20_000)
		spec := f.writeSpec("by_category", summingSpec+"prevent_destroy: true\n")
		f.mustRun("apply", "--auto-approve", f.dir)

		if r := f.run("mv", "drop", f.db+".by_category"); r.code != 1 || !strings.Contains(r.stderr, "prevent_destroy") {
			t.Fatalf("mv drop of a protected MV: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// The spec removed: the recorded spec still protects it.
		os.Remove(spec)
		other := filepath.Join(f.dir, "other.yaml")
		if err := os.WriteFile(other, []byte("database: "+f.db+"\n"+strings.ReplaceAll(summingSpec, "name: by_category", "name: other")), 0o644); err != nil {
			t.Fatal(err)
		}
		p := f.run("plan", "-destroy", f.dir)
		if p.code != 1 || !strings.Contains(p.stdout+p.stderr, "prevent_destroy: true") {
			t.Fatalf("plan -destroy of a protected MV: exit %d, want 1\n%s%s", p.code, p.stdout, p.stderr)
		}
		if r := f.run("apply", "-destroy", "--auto-approve", f.dir); r.code != 1 {
			t.Fatalf("apply -destroy of a protected MV: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if n := f.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE 'by_category%'"); n != "2" {
			t.Fatalf("a refused destroy dropped something: %s objects of by_category left, want 2", n)
		}

		// Turned off: plan shows an update that apply records; then the
		// destroy goes through.
		os.Remove(other)
		f.writeSpec("by_category", summingSpec+"prevent_destroy: false\n")
		p = f.run("plan", "--detailed-exitcode", f.dir)
		if p.code != 2 || !strings.Contains(p.stdout, "prevent_destroy changed") {
			t.Fatalf("plan after turning prevent_destroy off: exit %d\n%s%s", p.code, p.stdout, p.stderr)
		}
		f.mustRun("apply", "--auto-approve", f.dir)
		if p := f.run("plan", "--detailed-exitcode", f.dir); p.code != 0 {
			t.Fatalf("plan after recording prevent_destroy: exit %d\n%s", p.code, p.stdout)
		}
		f.mustRun("mv", "drop", f.db+".by_category")
		if n := f.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE 'by_category%'"); n != "0" {
			t.Fatalf("%s objects of by_category left after the drop", n)
		}
	})
}
