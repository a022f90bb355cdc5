package specs

import (
	"encoding/json"
	"testing"
)

// TestProbeFirstBatch: the first batch is probed when initial_batch_rows is
// left out, also after the spec went through the JSON a job or the REST API
// stores (defaults filled in), and not when another value is written.
func TestProbeFirstBatch(t *testing.T) {
	for _, c := range []struct {
		extra string
		want  bool
	}{
		{"", true},
		{"backfill:\n  initial_batch_rows: 500000\n", false},
		{"backfill:\n  initial_batch_rows: 1000000\n", true},
	} {
		ss, err := ParseYAML("spec.yaml", []byte(minimalYAML+c.extra))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := json.Marshal(ss[0])
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		if got := ss[0].Backfill.ProbeFirstBatch(); got != c.want {
			t.Errorf("%q: ProbeFirstBatch = %v, want %v", c.extra, got, c.want)
		}
		if got := back.Backfill.ProbeFirstBatch(); got != c.want {
			t.Errorf("%q through JSON: ProbeFirstBatch = %v, want %v", c.extra, got, c.want)
		}
	}
}
