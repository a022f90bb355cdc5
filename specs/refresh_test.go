package specs

import (
	"encoding/json"
	"strings"
	"testing"
)

const refreshYAML = `name: totals
source_table: products
engine: MergeTree()
order_by: [category]
columns:
  - {name: category, type: String}
  - {name: cnt, type: UInt64}
select_query: "SELECT category, count() AS cnt FROM {source_table} GROUP BY category"
refresh:
  every: 1 hours
  offset: 5 Minute 30 second
  depends_on: [other, db2.x]
`

func TestRefreshSpec(t *testing.T) {
	ss, err := ParseYAML("totals.yaml", []byte(refreshYAML))
	if err != nil {
		t.Fatal(err)
	}
	s := ss[0]
	if got, want := s.Schedule(), "EVERY 1 HOUR OFFSET 5 MINUTE 30 SECOND DEPENDS ON `default`.`other`, `db2`.`x`"; got != want {
		t.Errorf("Schedule() = %q, want %q", got, want)
	}
	// The recorded spec (defaults applied, backfill included) reads back.
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseJSON(b)
	if err != nil {
		t.Fatalf("the recorded spec does not read back: %v", err)
	}
	if back.Schedule() != s.Schedule() {
		t.Errorf("schedule after a round trip: %q", back.Schedule())
	}
	// The schedule is not in the hash (changed in place); append is.
	other := *s
	r := *s.Refresh
	r.Every = "2 hour"
	other.Refresh = &r
	if Hash(&other) != Hash(s) {
		t.Error("a new schedule changes the hash")
	}
	r.Append = true
	if Hash(&other) == Hash(s) {
		t.Error("append does not change the hash")
	}
	for _, bad := range []struct{ yaml, want string }{
		{strings.Replace(refreshYAML, "every: 1 hours", "every: soon", 1), `totals.yaml:10:10: refresh.every: "soon" is not an interval`},
		{strings.Replace(refreshYAML, "every: 1 hours", "every: 1 hour; DROP TABLE x", 1), "is not an interval"},
		{strings.Replace(refreshYAML, "[other, db2.x]", "[\"a b\"]", 1), `refresh.depends_on[0]: "a b" is not an MV name`},
		{refreshYAML + "backfill:\n  initial_batch_rows: 5\n", "a refreshable MV has no backfill"},
		{strings.Replace(refreshYAML, "  every: 1 hours\n", "", 1), "refresh.every: missing required field"},
	} {
		_, err := ParseYAML("totals.yaml", []byte(bad.yaml))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want %q", bad.yaml, err, bad.want)
		}
	}
}
