package state

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/migrations"
)

func TestProgressPercent(t *testing.T) {
	tests := []struct {
		name             string
		status           Status
		processed, total int64
		want             float64
	}{
		{"nothing to copy", StatusPending, 0, 0, 0},
		{"not started", StatusBackfilling, 0, 1000, 0},
		{"half", StatusBackfilling, 500, 1000, 50},
		{"rounded to a tenth", StatusBackfilling, 1, 3, 33.3},
		{"rounded half up", StatusBackfilling, 2, 3, 66.7},
		{"tiny progress", StatusBackfilling, 1, 1_000_000, 0},
		{"all rows, not yet completed", StatusOptimizing, 1000, 1000, 100},
		{"more than counted is capped", StatusBackfilling, 1200, 1000, 100},
		{"completed whatever the counts", StatusCompleted, 0, 1000, 100},
		{"completed with nothing to copy", StatusCompleted, 0, 0, 100},
		{"failed keeps its progress", StatusFailed, 250, 1000, 25},
		{"large counts", StatusBackfilling, 123_456_789_012, 987_654_321_098, 12.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &Job{Status: tt.status, ProcessedRows: tt.processed, TotalRows: tt.total}
			if got := j.ProgressPercent(); got != tt.want {
				t.Errorf("job ProgressPercent() = %v, want %v", got, tt.want)
			}
			p := &ShardProgress{Status: tt.status, ProcessedRows: tt.processed, TotalRows: tt.total}
			if got := p.ProgressPercent(); got != tt.want {
				t.Errorf("shard ProgressPercent() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	terminal := map[Status]bool{
		StatusCompleted: true, StatusFailed: true, StatusNeedsAttention: true, StatusPaused: true,
	}
	for _, s := range Statuses {
		if !s.Valid() {
			t.Errorf("%s.Valid() = false", s)
		}
		if got := s.Terminal(); got != terminal[s] {
			t.Errorf("%s.Terminal() = %v, want %v", s, got, terminal[s])
		}
	}
	for _, s := range []Status{"", "done", "Pending"} {
		if s.Valid() {
			t.Errorf("%q.Valid() = true", s)
		}
	}
}

func TestLoadMigrations(t *testing.T) {
	ms, err := loadMigrations(migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	// Numbered in ascending order, each once. Branches reserve their numbers
	// (0007 and 0008 were written in parallel), so a branch may hold a gap
	// until the other is merged; Migrate applies whatever is pending in
	// order, a gap included.
	for i, m := range ms {
		if i > 0 && m.version <= ms[i-1].version {
			t.Errorf("migration %s (version %d) does not follow %s", m.name, m.version, ms[i-1].name)
		}
		if strings.TrimSpace(m.sql) == "" {
			t.Errorf("%s is empty", m.name)
		}
	}
	if ms[0].name != "0001_mv_jobs" {
		t.Errorf("first migration = %s", ms[0].name)
	}
}

func TestLockedErrorMessage(t *testing.T) {
	since := time.Now().Add(-time.Minute)
	e := &LockedError{Key: "default.x", Holder: "apply pid 1234 on host x", Since: since}
	want := "mv default.x is locked by apply pid 1234 on host x since " + since.Local().Format("15:04:05")
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	e.Key = "mv:default.x"
	if e.Error() != want {
		t.Errorf("Error() with a namespaced key = %q, want %q", e.Error(), want)
	}
	e = &LockedError{Key: "default.x"}
	if want := "mv default.x is locked by another process"; e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

func TestJobJSONNulls(t *testing.T) {
	// Values a fresh single-node job has: no cluster, no nodes, no shards,
	// no ids yet.
	j := Job{ID: 1, Name: "x", Database: "default", Status: StatusPending,
		InsertedAt: time.Date(2024, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cluster_name", "cutoff_id", "last_processed_id", "error_message"} {
		if v, ok := got[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
	if nodes, ok := got["nodes"].([]any); !ok || len(nodes) != 0 {
		t.Errorf("nodes = %v, want []", got["nodes"])
	}
	if shards, ok := got["shards"].([]any); !ok || len(shards) != 0 {
		t.Errorf("shards = %v, want []", got["shards"])
	}
	if got["created_at"] != "2024-01-02T02:04:05Z" {
		t.Errorf("created_at = %v, want UTC RFC 3339", got["created_at"])
	}
	if _, ok := got["config"]; ok {
		t.Error("config is not part of the REST view")
	}
}

func TestDataNotVerified(t *testing.T) {
	adopted := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	before, after := adopted.Add(-time.Hour), adopted.Add(time.Hour)
	for _, tc := range []struct {
		name     string
		j        Job
		notVerif bool
	}{
		{"created by shirath", Job{LiveVersion: 1}, false},
		{"adopted, never verified", Job{LiveVersion: 1, AdoptedAt: &adopted}, true},
		{"adopted, verified before the adoption", Job{LiveVersion: 1, AdoptedAt: &adopted, VerifiedAt: &before}, true},
		{"adopted, verified since", Job{LiveVersion: 1, AdoptedAt: &adopted, VerifiedAt: &after}, false},
		{"adopted, then changed by shirath", Job{LiveVersion: 2, AdoptedAt: &adopted}, false},
	} {
		if got := tc.j.DataNotVerified(); got != tc.notVerif {
			t.Errorf("%s: DataNotVerified() = %v, want %v", tc.name, got, tc.notVerif)
		}
	}
}
