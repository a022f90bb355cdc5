package verify

import "testing"

// TestSignature: the signature of a difference is the exact difference of
// numeric values, so that a planted row reads the same while rows keep
// arriving, and both values otherwise.
func TestSignature(t *testing.T) {
	a := Difference{Kind: KindDiffers, Target: []string{"4103", "205735.50"}, Expected: []string{"4102", "204735.5"}}
	b := Difference{Kind: KindDiffers, Target: []string{"4203", "210000.1"}, Expected: []string{"4202", "209000.10"}}
	if signature(a) != signature(b) || signature(a) != "differs|1|1000" {
		t.Fatalf("one planted row under writes: %s and %s", signature(a), signature(b))
	}
	c := Difference{Kind: KindDiffers, Target: []string{"4103", "205735.50"}, Expected: []string{"4103", "204735.5"}}
	if signature(a) == signature(c) {
		t.Fatal("a row in flight does not change the signature")
	}
	x := Difference{Kind: KindDiffers, Target: []string{"(1,'a')"}, Expected: []string{"(2,'a')"}}
	if got := signature(x); got != `differs|"(1,'a')"~"(2,'a')"` {
		t.Fatalf("non-numeric: %s", got)
	}
	e := Difference{Kind: KindExtra, Target: []string{"5"}}
	if got := signature(e); got != `extra|"5"~""` {
		t.Fatalf("extra: %s", got)
	}

	tr := newTrack(a)
	tr.differs(c)
	tr.differs(b)
	if n, d := tr.modal(); n != 2 || d.Target[0] != "4203" {
		t.Fatalf("modal: %d, %v; want 2 and the latest observation of the planted row", n, d.Target)
	}
	tr.matches()
	if n, _ := tr.modal(); n != 0 || tr.diff != 0 || tr.same != 1 {
		t.Fatalf("after a match: modal %d, diff %d, same %d", n, tr.diff, tr.same)
	}
}
