package sqlgen

import (
	"testing"

	"github.com/shirath/shirath/specs"
)

func TestSourceStatements(t *testing.T) {
	s := &specs.Spec{Name: "m", Database: "shop", SourceTable: "pro`ducts"}
	s.Backfill.KeyColumn = "id"
	m := MV{Spec: s}
	cases := map[string]string{
		m.MaxKey():             "SELECT toInt64(max(`id`)) FROM `shop`.`pro\\`ducts`",
		m.CountUpTo(-5):        "SELECT toInt64(count()), toInt64(min(`id`)) FROM `shop`.`pro\\`ducts` WHERE `id` <= -5",
		m.CountRange(10, 2000): "SELECT toInt64(count()) FROM `shop`.`pro\\`ducts` WHERE `id` > 10 AND `id` <= 2000",
		m.SyncSource():         "SYSTEM SYNC REPLICA `shop`.`pro\\`ducts`",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}
