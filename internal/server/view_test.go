package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

func mustSpec(t *testing.T, body string) *specs.Spec {
	t.Helper()
	s, err := specs.ParseJSON([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A stored spec reads back to the same hash: the daemon must not see a
// spec it stored itself as changed.
func TestSpecRecordRoundTrip(t *testing.T) {
	for _, body := range []string{
		validSpec,
		strings.Replace(validSpec, `"select_query"`, `"backfill": {"initial_batch_rows": 20000, "max_batch_rows": 20000, "settle_delay": "0s", "optimize": false}, "select_query"`, 1),
		strings.Replace(validSpec, `"select_query"`, `"database": "db", "cluster": "auto", "target_table": "t", "select_query"`, 1),
	} {
		s := mustSpec(t, body)
		rec, err := SpecRecord(s, state.OriginAPI)
		if err != nil {
			t.Fatal(err)
		}
		d := specFromRecord(&rec)
		if d.Err != nil || d.Hash != rec.SpecHash || d.Key != Key(s.Database, s.Name) {
			t.Fatalf("round trip of %s: %+v, hash %s", body, d, rec.SpecHash)
		}
	}
}

func TestViewPendingAndJob(t *testing.T) {
	s := mustSpec(t, validSpec)
	rec, _ := SpecRecord(s, state.OriginAPI)
	rec.CreatedAt = time.Date(2024, 1, 20, 10, 0, 0, 0, time.UTC)
	rec.UpdatedAt = rec.CreatedAt
	d := specFromRecord(&rec)
	cond := &Condition{State: CondBlocked, Reason: "Blocked", Message: "source table default.products does not exist", Terminal: true}
	v, err := View(nil, &d, cond)
	if err != nil {
		t.Fatal(err)
	}
	got := string(v)
	for _, want := range []string{
		`{"id":null,"name":"by_cat","database":"default","source_table":"products","target_table":"by_cat_data","status":"pending"`,
		`"error_message":"source table default.products does not exist"`,
		`"created_at":"2024-01-20T10:00:00Z"`,
		`"origin":"api","reconcile":{"state":"blocked"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("pending view lacks %s:\n%s", want, got)
		}
	}

	cut := int64(50000)
	job := &state.Job{ID: 7, Name: "by_cat", Database: "default", Status: state.StatusBackfilling, CutoffID: &cut, TotalRows: 50000, ProcessedRows: 35000, ErrorMessage: "earlier"}
	v, err = View(job, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(v, &m); err != nil {
		t.Fatal(err)
	}
	if m["id"] != 7.0 || m["progress_percent"] != 70.0 || m["origin"] != nil || m["reconcile"] != nil || m["error_message"] != "earlier" {
		t.Fatalf("job view: %s", v)
	}
	if !strings.HasPrefix(string(v), `{"id":7,"name":"by_cat"`) {
		t.Fatalf("the job's own fields do not come first: %s", v)
	}
}

func TestViewsOrder(t *testing.T) {
	s := mustSpec(t, strings.Replace(validSpec, `"by_cat"`, `"a_pending"`, 1))
	rec, _ := SpecRecord(s, state.OriginAPI)
	jobs := []*state.Job{{ID: 1, Name: "z", Database: "default", Status: state.StatusCompleted}}
	vs, err := Views(jobs, StoredSpecs([]*state.SpecRecord{&rec}), nil)
	if err != nil || len(vs) != 2 {
		t.Fatalf("%v %d", err, len(vs))
	}
	if !strings.Contains(string(vs[0]), `"name":"a_pending"`) || !strings.Contains(string(vs[1]), `"name":"z"`) {
		t.Fatalf("order: %s %s", vs[0], vs[1])
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	good := "name: good\ndatabase: db\nsource_table: p\nengine: SummingMergeTree()\norder_by: [c]\ncolumns:\n  - name: c\n    type: String\nselect_query: SELECT c FROM {source_table} GROUP BY c\n"
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", good)
	write("b.yaml", strings.Replace(good, "type: String", "type: String; DROP TABLE p", 1)+"---\n"+strings.Replace(good, "name: good", "name: second", 1))
	write("c.yml", good) // the same name again
	write("d.yaml", "name: [broken\n")
	write("notes.txt", "not a spec")
	ds := loadDir(dir)
	if len(ds.byKey) != 2 {
		t.Fatalf("keys: %v", ds.byKey)
	}
	g := ds.byKey["db.good"]
	if g.Err == nil || !strings.Contains(g.Err.Error(), "defined twice") {
		t.Fatalf("db.good: %+v", g)
	}
	// b.yaml does not load: its error goes to both of its specs' names.
	sec := ds.byKey["db.second"]
	if sec.Err == nil || !strings.Contains(sec.Err.Error(), "b.yaml:") || sec.Origin != state.OriginFile {
		t.Fatalf("db.second: %+v", sec)
	}
	if len(ds.errs) != 1 || !strings.Contains(ds.errs[0], "d.yaml") {
		t.Fatalf("directory errors: %q", ds.errs)
	}
}

// The spec directory's load is reused while its files look the same, and
// read again when one changes (even to the same size) or after
// specDirReuse.
func TestLoadSpecDirCache(t *testing.T) {
	dir := t.TempDir()
	spec := func(name string) string {
		return "name: " + name + "\ndatabase: db\nsource_table: p\nengine: SummingMergeTree()\norder_by: [c]\ncolumns:\n  - name: c\n    type: String\nselect_query: SELECT c FROM {source_table} GROUP BY c\n"
	}
	path := filepath.Join(dir, "a.yaml")
	write := func(body string, mtime time.Time) {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	write(spec("aaaa"), t0)
	s := &Server{cfg: Config{SpecDir: dir}}
	has := func(key string) bool { _, ok := s.loadSpecDir().byKey[key]; return ok }
	if !has("db.aaaa") {
		t.Fatal("db.aaaa not loaded")
	}
	first := s.specDir.at
	if !has("db.aaaa") || !s.specDir.at.Equal(first) {
		t.Fatal("an unchanged directory was loaded again")
	}
	// The same size, another modification time: loaded again.
	write(spec("bbbb"), t0.Add(time.Second))
	if !has("db.bbbb") || has("db.aaaa") {
		t.Fatal("a changed file was not loaded again")
	}
	// The same size and modification time (a rewrite within the clock's
	// granularity): seen once specDirReuse has passed.
	write(spec("cccc"), t0.Add(time.Second))
	if !has("db.bbbb") {
		t.Fatal("the load was not reused within specDirReuse")
	}
	s.specDir.at = time.Now().Add(-specDirReuse)
	if !has("db.cccc") {
		t.Fatal("the load was reused after specDirReuse")
	}
}
