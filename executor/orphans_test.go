package executor

import (
	"reflect"
	"strings"
	"testing"
)

func TestUnknownParts(t *testing.T) {
	before := map[string]uint64{"all_0_0_0": 5, "all_1_1_0": 3, "all_2_2_0": 7, "all_3_3_0": 1}
	// all_1_1_0 was merged away between the reads (gone from both
	// ZooKeeper and the second read); all_4_4_0 appeared after the first.
	after := map[string]uint64{"all_0_0_0": 5, "all_2_2_0": 7, "all_3_3_0": 1, "all_4_4_0": 2}
	known := map[string]bool{"all_0_0_0": true, "all_4_4_0": true}
	got := unknownParts(before, after, known)
	if want := []string{"all_2_2_0", "all_3_3_0"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("unknownParts = %v, want %v", got, want)
	}
	if got := unknownParts(before, after, map[string]bool{"all_0_0_0": true, "all_2_2_0": true, "all_3_3_0": true}); got != nil {
		t.Fatalf("every active part known: got %v", got)
	}
}

func TestStillOrphans(t *testing.T) {
	a := orphanPart{Addr: "n1", Name: "all_2_2_0", Rows: 7}
	b := orphanPart{Addr: "n2", Name: "all_2_2_0", Rows: 7}
	c := orphanPart{Addr: "n1", Name: "all_5_5_0", Rows: 1}
	if got := stillOrphans(nil, []orphanPart{a, b}, 0); !reflect.DeepEqual(got, []orphanPart{a, b}) {
		t.Fatalf("first look keeps what it found: %v", got)
	}
	// Same part name on another node is another part.
	if got := stillOrphans([]orphanPart{a}, []orphanPart{b, a, c}, 1); !reflect.DeepEqual(got, []orphanPart{a}) {
		t.Fatalf("second look keeps the parts seen both times: %v", got)
	}
	if got := stillOrphans([]orphanPart{a}, nil, 1); got != nil {
		t.Fatalf("a part gone by the second look: %v", got)
	}
}

func TestOrphanError(t *testing.T) {
	err := orphanError("db.by_category_data", "db.by_category", []orphanPart{
		{Addr: "127.0.0.1:19103", Name: "all_7_7_0", Rows: 10},
		{Addr: "127.0.0.1:19104", Name: "all_9_9_0", Rows: 3},
	})
	msg := err.Error()
	for _, want := range []string{
		"db.by_category_data", "all_7_7_0 on 127.0.0.1:19103 (10 rows)", "all_9_9_0 on 127.0.0.1:19104 (3 rows)",
		"ZooKeeper does not know", "twice", "shirath mv backfill db.by_category --restart",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q:\n%s", want, msg)
		}
	}
}
