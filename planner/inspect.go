package planner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/hashicorp/go-hclog"

	"github.com/shirath/shirath/internal/chclient"
)

// ErrNoCluster is returned when `cluster: auto` finds no single real cluster.
var ErrNoCluster = errors.New("planner: cluster detection")

// Node is one ClickHouse server of a topology.
type Node struct {
	Addr    string
	Shard   int // 1-based on a cluster; 1 on a single node
	Replica int // 1-based
	Conn    driver.Conn
	Version chclient.Version
	// Features is what the server can do, asked of it when it was reached.
	Features chclient.Features
	// Err is set when the node could not be reached; its state is unknown.
	Err error
}

// Topology is the set of nodes an MV lives on: one node, or every node of a
// cluster.
type Topology struct {
	Cluster string // "" for a single node
	Nodes   []*Node
	// Deployment identifies the ClickHouse deployment, as jobs record it
	// (see Connector.Deployments).
	Deployment string
}

// Shards groups the nodes by shard number, in shard order.
func (t *Topology) Shards() [][]*Node {
	by := map[int][]*Node{}
	for _, n := range t.Nodes {
		by[n.Shard] = append(by[n.Shard], n)
	}
	keys := make([]int, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	out := make([][]*Node, 0, len(keys))
	for _, k := range keys {
		out = append(out, by[k])
	}
	return out
}

// DropSync reports whether every node that answered drops synchronously
// (DROP TABLE ... SYNC).
func (t *Topology) DropSync() bool {
	h := t.Healthy()
	for _, n := range h {
		if !n.Features.DropSync {
			return false
		}
	}
	return len(h) > 0
}

// Healthy returns the nodes that answered.
func (t *Topology) Healthy() []*Node {
	var out []*Node
	for _, n := range t.Nodes {
		if n.Err == nil {
			out = append(out, n)
		}
	}
	return out
}

// Down returns the addresses of the nodes that did not answer.
func (t *Topology) Down() []string {
	var out []string
	for _, n := range t.Nodes {
		if n.Err != nil {
			out = append(out, n.Addr)
		}
	}
	return out
}

// Connector opens and caches connections to ClickHouse nodes, starting from
// one seed address.
type Connector struct {
	Seed    string
	Options chclient.Options
	Log     hclog.Logger

	mu    sync.Mutex
	conns map[string]driver.Conn
	topos map[string]*Topology
}

// Conn returns a cached connection to addr.
func (c *Connector) Conn(ctx context.Context, addr string) (driver.Conn, error) {
	c.mu.Lock()
	conn, ok := c.conns[addr]
	c.mu.Unlock()
	if ok {
		return conn, nil
	}
	conn, err := chclient.Open(ctx, addr, c.Options)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns == nil {
		c.conns = map[string]driver.Conn{}
	}
	if old, ok := c.conns[addr]; ok {
		conn.Close()
		return old, nil
	}
	c.conns[addr] = conn
	return conn, nil
}

// Forget drops a cached connection, so that the next use reconnects (after a
// node came back).
func (c *Connector) Forget(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn, ok := c.conns[addr]; ok {
		conn.Close()
		delete(c.conns, addr)
	}
	c.topos = nil
}

// Close closes every connection.
func (c *Connector) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
	c.topos = nil
}

// builtinClusters are the example clusters ClickHouse's default config ships.
// They are never what a user means by `cluster: auto`.
func builtinCluster(name string) bool {
	return strings.HasPrefix(name, "test_") || name == "default" || strings.HasPrefix(name, "parallel_replicas")
}

// ResolveCluster turns a spec's cluster field into a cluster name: "" stays
// "" (a single node), "auto" detects the one real cluster (and fails when
// there is none or several), and a name must exist.
func (c *Connector) ResolveCluster(ctx context.Context, want string) (string, error) {
	if want == "" {
		return "", nil
	}
	seed, err := c.Conn(ctx, c.Seed)
	if err != nil {
		return "", err
	}
	rows, err := seed.Query(ctx, "SELECT DISTINCT cluster FROM system.clusters ORDER BY cluster")
	if err != nil {
		return "", fmt.Errorf("read system.clusters on %s: %w", c.Seed, err)
	}
	defer rows.Close()
	var all, real []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return "", err
		}
		all = append(all, name)
		if !builtinCluster(name) {
			real = append(real, name)
		}
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	if want != "auto" {
		for _, n := range all {
			if n == want {
				return want, nil
			}
		}
		return "", fmt.Errorf("%w: cluster %q is not in system.clusters on %s (clusters there: %s)", ErrNoCluster, want, c.Seed, strings.Join(all, ", "))
	}
	switch len(real) {
	case 0:
		if len(all) == 0 {
			return "", fmt.Errorf("%w: cluster: auto found no cluster on %s (system.clusters is empty): remove cluster: for a single node, or name the cluster", ErrNoCluster, c.Seed)
		}
		return "", fmt.Errorf("%w: cluster: auto found no cluster on %s besides ClickHouse's built-in examples (%s): remove cluster: for a single node, or name the cluster", ErrNoCluster, c.Seed, strings.Join(all, ", "))
	case 1:
		return real[0], nil
	}
	return "", fmt.Errorf("%w: cluster: auto found %d clusters on %s (%s): name one in the spec", ErrNoCluster, len(real), c.Seed, strings.Join(real, ", "))
}

// Topology returns the nodes of a cluster (or the seed alone for ""), each
// connected, or marked with the error that kept it from answering.
func (c *Connector) Topology(ctx context.Context, cluster string) (*Topology, error) {
	c.mu.Lock()
	if t, ok := c.topos[cluster]; ok {
		c.mu.Unlock()
		return t, nil
	}
	c.mu.Unlock()
	seed, err := c.Conn(ctx, c.Seed)
	if err != nil {
		return nil, err
	}
	t := &Topology{Cluster: cluster}
	if cluster == "" {
		t.Nodes = []*Node{{Addr: c.Seed, Shard: 1, Replica: 1, Conn: seed}}
		if t.Deployment, err = NodeIdentity(ctx, seed); err != nil {
			return nil, fmt.Errorf("identify %s: %w", c.Seed, err)
		}
	} else {
		rows, err := seed.Query(ctx, "SELECT shard_num, replica_num, host_name, port FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num", cluster)
		if err != nil {
			return nil, fmt.Errorf("read system.clusters on %s: %w", c.Seed, err)
		}
		for rows.Next() {
			var shard, replica uint32
			var host string
			var port uint16
			if err := rows.Scan(&shard, &replica, &host, &port); err != nil {
				rows.Close()
				return nil, err
			}
			t.Nodes = append(t.Nodes, &Node{Addr: fmt.Sprintf("%s:%d", host, port), Shard: int(shard), Replica: int(replica)})
		}
		rows.Close()
		if len(t.Nodes) == 0 {
			return nil, fmt.Errorf("%w: cluster %q has no nodes on %s", ErrNoCluster, cluster, c.Seed)
		}
		addrs := make([]string, len(t.Nodes))
		for i, n := range t.Nodes {
			addrs[i] = n.Addr
		}
		t.Deployment = clusterIdentity(cluster, addrs)
		var wg sync.WaitGroup
		for _, n := range t.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.Conn, n.Err = c.Conn(ctx, n.Addr)
			}()
		}
		wg.Wait()
	}
	var wg sync.WaitGroup
	for _, n := range t.Nodes {
		if n.Err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n.Version, n.Err = chclient.ServerVersion(ctx, n.Conn); n.Err == nil {
				n.Features, n.Err = chclient.DetectFeatures(ctx, n.Conn)
			}
		}()
	}
	wg.Wait()
	c.mu.Lock()
	if c.topos == nil {
		c.topos = map[string]*Topology{}
	}
	c.topos[cluster] = t
	c.mu.Unlock()
	return t, nil
}

// Deployments names the ClickHouse deployments the seed belongs to: the seed
// as a single node, and every cluster its system.clusters lists. Jobs record
// the deployment they were applied to, and a job store shared by several
// deployments shows each only the jobs of the deployments it belongs to.
func (c *Connector) Deployments(ctx context.Context) ([]string, error) {
	seed, err := c.Conn(ctx, c.Seed)
	if err != nil {
		return nil, err
	}
	self, err := NodeIdentity(ctx, seed)
	if err != nil {
		return nil, fmt.Errorf("identify %s: %w", c.Seed, err)
	}
	out := []string{self}
	rows, err := seed.Query(ctx, "SELECT cluster, host_name, port FROM system.clusters ORDER BY cluster, shard_num, replica_num")
	if err != nil {
		return nil, fmt.Errorf("read system.clusters on %s: %w", c.Seed, err)
	}
	defer rows.Close()
	nodes := map[string][]string{}
	var names []string
	for rows.Next() {
		var cluster, host string
		var port uint16
		if err := rows.Scan(&cluster, &host, &port); err != nil {
			return nil, err
		}
		if _, ok := nodes[cluster]; !ok {
			names = append(names, cluster)
		}
		nodes[cluster] = append(nodes[cluster], fmt.Sprintf("%s:%d", host, port))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		out = append(out, clusterIdentity(n, nodes[n]))
	}
	return out, nil
}

// clusterIdentity is a cluster's deployment: its name and its nodes as
// system.clusters lists them.
func clusterIdentity(name string, addrs []string) string {
	a := append([]string{}, addrs...)
	sort.Strings(a)
	return "cluster:" + name + "[" + strings.Join(a, ",") + "]"
}

// NodeIdentity is a single node's deployment, whatever address reaches it:
// its serverUUID() where the server has one, else its host name and data
// path (18.16 has no server UUID; chDB's engine reports a zero one).
func NodeIdentity(ctx context.Context, conn driver.Conn) (string, error) {
	var hasUUID uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.functions WHERE name = 'serverUUID'").Scan(&hasUUID); err != nil {
		return "", err
	}
	if hasUUID > 0 {
		var id string
		if err := conn.QueryRow(ctx, "SELECT toString(serverUUID())").Scan(&id); err != nil {
			return "", err
		}
		if id != "00000000-0000-0000-0000-000000000000" {
			return "node:uuid:" + id, nil
		}
	}
	var host, path string
	if err := conn.QueryRow(ctx, "SELECT hostName(), data_path FROM system.databases WHERE name = 'system'").Scan(&host, &path); err != nil {
		return "", err
	}
	return "node:" + host + ":" + path, nil
}

// Table is one table (or view) as a node's system tables describe it.
type Table struct {
	Database     string
	Name         string
	Engine       string
	EngineFull   string
	CreateQuery  string
	SortingKey   string
	PartitionKey string
	Columns      []Column
}

// Column is a column as system.columns prints it.
type Column struct{ Name, Type string }

// ColumnType returns the type of a column, or "".
func (t *Table) ColumnType(name string) string {
	for _, c := range t.Columns {
		if c.Name == name {
			return c.Type
		}
	}
	return ""
}

// NodeState is what one node holds.
type NodeState struct {
	Node   *Node
	Tables map[string]*Table // by "database.name"
	Err    error
}

// Live is the inspected state of one topology.
type Live struct {
	Topology *Topology
	Nodes    []*NodeState
}

// Inspect reads the tables of the given databases on every node, in
// parallel, with two queries per node whatever the number of MVs.
func Inspect(ctx context.Context, t *Topology, databases []string) *Live {
	live := &Live{Topology: t}
	var wg sync.WaitGroup
	for _, n := range t.Nodes {
		ns := &NodeState{Node: n, Err: n.Err}
		live.Nodes = append(live.Nodes, ns)
		if n.Err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ns.Tables, ns.Err = inspectNode(ctx, n, databases)
		}()
	}
	wg.Wait()
	return live
}

func inspectNode(ctx context.Context, n *Node, databases []string) (map[string]*Table, error) {
	tables := map[string]*Table{}
	rows, err := n.Conn.Query(ctx, `SELECT database, name, engine, engine_full, create_table_query, sorting_key, partition_key
		FROM system.tables WHERE has(?, database)`, databases)
	if err != nil {
		return nil, fmt.Errorf("read system.tables on %s: %w", n.Addr, err)
	}
	for rows.Next() {
		t := &Table{}
		if err := rows.Scan(&t.Database, &t.Name, &t.Engine, &t.EngineFull, &t.CreateQuery, &t.SortingKey, &t.PartitionKey); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read system.tables on %s: %w", n.Addr, err)
		}
		tables[t.Database+"."+t.Name] = t
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read system.tables on %s: %w", n.Addr, err)
	}
	rows, err = n.Conn.Query(ctx, `SELECT database, table, name, type FROM system.columns WHERE has(?, database)`, databases)
	if err != nil {
		return nil, fmt.Errorf("read system.columns on %s: %w", n.Addr, err)
	}
	defer rows.Close()
	for rows.Next() {
		var db, table string
		var c Column
		if err := rows.Scan(&db, &table, &c.Name, &c.Type); err != nil {
			return nil, fmt.Errorf("read system.columns on %s: %w", n.Addr, err)
		}
		if t, ok := tables[db+"."+table]; ok {
			t.Columns = append(t.Columns, c)
		}
	}
	return tables, rows.Err()
}

// Table returns the table on the first healthy node that has it, or nil.
func (l *Live) Table(db, name string) *Table {
	for _, ns := range l.Nodes {
		if ns.Err == nil {
			if t, ok := ns.Tables[db+"."+name]; ok {
				return t
			}
		}
	}
	return nil
}

// Missing lists the healthy nodes that lack the table.
func (l *Live) Missing(db, name string) []string {
	var out []string
	for _, ns := range l.Nodes {
		if ns.Err == nil {
			if _, ok := ns.Tables[db+"."+name]; !ok {
				out = append(out, ns.Node.Addr)
			}
		}
	}
	return out
}

// Present lists the healthy nodes that have the table.
func (l *Live) Present(db, name string) []string {
	var out []string
	for _, ns := range l.Nodes {
		if ns.Err == nil {
			if _, ok := ns.Tables[db+"."+name]; ok {
				out = append(out, ns.Node.Addr)
			}
		}
	}
	return out
}

// Unreachable lists the nodes whose state could not be read.
func (l *Live) Unreachable() []string {
	var out []string
	for _, ns := range l.Nodes {
		if ns.Err != nil {
			out = append(out, fmt.Sprintf("%s (%v)", ns.Node.Addr, ns.Err))
		}
	}
	return out
}
