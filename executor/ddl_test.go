package executor

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestIdempotentDDL(t *testing.T) {
	for q, want := range map[string]bool{
		"CREATE TABLE IF NOT EXISTS `db`.`t` ON CLUSTER `c` (a UInt8) ENGINE = Memory":  true,
		"create materialized view if not exists db.mv on cluster c TO db.t AS SELECT 1": true,
		"DROP TABLE IF EXISTS `db`.`mv__v2` ON CLUSTER `c` SYNC":                        true,
		"DROP DATABASE IF EXISTS db ON CLUSTER c":                                       true,
		"CREATE TABLE `db`.`t` ON CLUSTER `c` (a UInt8) ENGINE = Memory":                false,
		"DROP TABLE `db`.`t` ON CLUSTER `c`":                                            false,
		"RENAME TABLE db.a TO db.b ON CLUSTER c":                                        false,
		"ALTER TABLE db.t ON CLUSTER c MODIFY QUERY SELECT 1":                           false,
		"DROP": false,
	} {
		if got := idempotentDDL(q); got != want {
			t.Errorf("idempotentDDL(%q) = %v, want %v", q, got, want)
		}
	}
}

func TestDDLQueued(t *testing.T) {
	queued := &clickhouse.Exception{Code: 159, Message: "Watching task /clickhouse/task_queue/ddl/query-0000006640 is executing longer than distributed_ddl_task_timeout (=15) seconds. There are 1 unfinished hosts (0 of them are currently active), they are going to execute the query in background"}
	if !ddlQueued(fmt.Errorf("DROP TABLE IF EXISTS on n1: %w", queued)) {
		t.Error("code 159 with unfinished hosts: not seen as queued")
	}
	if ddlQueued(&clickhouse.Exception{Code: 159, Message: "Timeout exceeded: elapsed 10 seconds"}) {
		t.Error("a query timeout seen as a queued DDL")
	}
	if ddlQueued(&clickhouse.Exception{Code: 57, Message: "Table already exists"}) || ddlQueued(nil) {
		t.Error("other errors seen as queued")
	}
}

func TestZooKeeperHint(t *testing.T) {
	lost := &clickhouse.Exception{Code: 319, Message: "Unknown status, client must retry. Reason: Connection loss"}
	if h := zooKeeperHint(fmt.Errorf("exec: %w", lost)); !strings.Contains(h, "ZooKeeper") {
		t.Errorf("code 319: hint %q names no ZooKeeper", h)
	}
	if h := zooKeeperHint(&clickhouse.Exception{Code: 60, Message: "Table doesn't exist"}); h != "" {
		t.Errorf("code 60: hint %q", h)
	}
}
