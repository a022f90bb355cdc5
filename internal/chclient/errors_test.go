package chclient

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestCoordinationLost(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("DROP TABLE on n1: %w", &clickhouse.Exception{Code: 999, Message: "Session expired"}), true},
		{&clickhouse.Exception{Code: 242, Message: "Table is in readonly mode"}, true},
		{&clickhouse.Exception{Code: 225, Message: "Cannot use ZooKeeper"}, true},
		{errors.New("Coordination::Exception: Connection loss"), true},
		{&clickhouse.Exception{Code: 60, Message: "Table doesn't exist"}, false},
		{errors.New("dial tcp: connection refused"), false},
		{nil, false},
	}
	for _, c := range cases {
		if got := CoordinationLost(c.err); got != c.want {
			t.Errorf("CoordinationLost(%v) = %v, want %v", c.err, got, c.want)
		}
		if got := Explain(c.err) != ""; got != c.want {
			t.Errorf("Explain(%v) says something: %v, want %v", c.err, got, c.want)
		}
	}
}
