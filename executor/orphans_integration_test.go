//go:build integration

package executor

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/testenv"
)

// TestOrphanPartsOnCluster puts one replica of the 2x2 cluster in the state
// an INSERT with an unknown status leaves behind (a part active there that
// its list of parts in ZooKeeper does not hold), by deleting the part's node
// in ZooKeeper, and checks that orphanParts finds that part on that replica
// only, and nothing before.
func TestOrphanPartsOnCluster(t *testing.T) {
	env := testenv.Load(t)
	c := env.ClusterDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n0 := c.Nodes[0]
	create := fmt.Sprintf("CREATE TABLE %s.t ON CLUSTER %s (k UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/%s/t', '{replica}') ORDER BY k", c.DB, c.Name, c.DB)
	if err := n0.Exec(ctx, create); err != nil {
		t.Fatal(err)
	}
	if err := n0.Exec(ctx, fmt.Sprintf("INSERT INTO %s.t SELECT number FROM numbers(10)", c.DB)); err != nil {
		t.Fatal(err)
	}
	var part, zk, replica string
	if err := n0.QueryRow(ctx, fmt.Sprintf("SELECT name FROM system.parts WHERE database = '%s' AND table = 't' AND active", c.DB)).Scan(&part); err != nil {
		t.Fatal(err)
	}
	if err := n0.QueryRow(ctx, "SELECT zookeeper_path, replica_name FROM system.replicas WHERE database = ? AND table = 't'", c.DB).Scan(&zk, &replica); err != nil {
		t.Fatal(err)
	}
	for i, n := range c.Nodes {
		got, err := orphanParts(ctx, n, c.Addrs[i], c.DB, "t")
		if err != nil || got != nil {
			t.Fatalf("%s before: orphanParts = %v, %v; want none", c.Addrs[i], got, err)
		}
	}
	env.DeleteZooKeeperNode(t, n0, zk+"/replicas/"+replica+"/parts/"+part)
	for i, n := range c.Nodes {
		got, err := orphanParts(ctx, n, c.Addrs[i], c.DB, "t")
		if err != nil {
			t.Fatal(err)
		}
		var want []orphanPart
		if i == 0 {
			want = []orphanPart{{Addr: c.Addrs[0], Name: part, Rows: 10}}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s after the part's node was deleted: orphanParts = %v, want %v", c.Addrs[i], got, want)
		}
	}
}
