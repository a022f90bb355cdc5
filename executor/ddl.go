package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// ddlAll runs a statement on every node. q is generated with ON CLUSTER
// asked for (sqlgen leaves it out on a single node); on a cluster it runs
// only when every node answers, else it fails naming the nodes that are down
// (a statement that only some nodes ran would leave the cluster
// inconsistent).
func (r *run) ddlAll(ctx context.Context, q string) error {
	if r.topo.Cluster == "" {
		return r.exec(ctx, r.topo.Nodes[0], q)
	}
	if down := r.topo.Down(); len(down) > 0 {
		return fmt.Errorf("nodes %s do not answer: %s needs every node of cluster %s", strings.Join(down, ", "), firstWords(q), r.topo.Cluster)
	}
	for try := 0; ; try++ {
		err := r.exec(ctx, r.topo.Nodes[0], q)
		if err == nil {
			return nil
		}
		// ON CLUSTER names no host when it times out ("N unfinished
		// hosts"): say which nodes do not answer now.
		var gone []string
		for _, n := range r.topo.Nodes {
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			if n.Conn == nil || n.Conn.Ping(pctx) != nil {
				gone = append(gone, n.Addr)
			}
			cancel()
		}
		if len(gone) > 0 {
			return fmt.Errorf("%w; nodes not answering: %s (the statement stays queued for them and runs when they are back)", err, strings.Join(gone, ", "))
		}
		if try >= ddlQueuedRetries || !ddlQueued(err) || !idempotentDDL(q) {
			return err
		}
		r.log().Warn("an ON CLUSTER statement is still queued for a node that answers: its DDL queue lags; running the statement again (it is idempotent)",
			"statement", firstWords(q), "attempt", try+1, "error", err)
	}
}

// ddlQueuedRetries is how many more times ddlAll sends an idempotent ON
// CLUSTER statement that timed out on a node that answers. Each waits up to
// distributed_ddl_task_timeout again.
const ddlQueuedRetries = 3

// ddlQueued reports whether err is an ON CLUSTER statement that timed out
// with hosts that have not run it yet (code 159, "N unfinished hosts"): the
// statement stays queued for them. When every node answers, that is a node
// whose DDL queue lags behind: seen on a long-lived 18.16 cluster whose
// queue held thousands of tasks, where one node ran a DROP after the 15 s
// timeout.
func ddlQueued(err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && ex.Code == 159 && strings.Contains(ex.Message, "unfinished hosts")
}

// idempotentDDL reports whether q ends in the same state however many times
// a node runs it: CREATE ... IF NOT EXISTS and DROP ... IF EXISTS. A node
// runs its queue in order, so the copy sent again runs after the first one.
// A RENAME or an ALTER is not: running it twice fails or changes more.
func idempotentDDL(q string) bool {
	head := strings.Join(strings.Fields(strings.ToUpper(q)), " ") + " "
	for _, p := range []string{
		"CREATE TABLE IF NOT EXISTS ", "CREATE MATERIALIZED VIEW IF NOT EXISTS ", "CREATE VIEW IF NOT EXISTS ", "CREATE DATABASE IF NOT EXISTS ",
		"DROP TABLE IF EXISTS ", "DROP VIEW IF EXISTS ", "DROP DATABASE IF EXISTS ",
	} {
		if strings.HasPrefix(head, p) {
			return true
		}
	}
	return false
}

// zooKeeperHint names ZooKeeper in the error of a statement that failed
// because the server lost its ZooKeeper session: code 319 says only
// "Unknown status, client must retry. Reason: Connection loss".
func zooKeeperHint(err error) string {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) && ex.Code == 319 {
		return " (the server lost its ZooKeeper session during the INSERT; whether the batch was written is settled from its in-flight marker on the next apply)"
	}
	return ""
}
