package chclient

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// sent counts the statements this process sent, by node address (every
// connection Open returns counts): the CLI logs them at debug level, so
// that what a plan costs each node can be checked (make bench does).
var sent sync.Map // addr -> *atomic.Int64

func counter(addr string) *atomic.Int64 {
	c, _ := sent.LoadOrStore(addr, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// NodeCount is the number of statements sent to one node.
type NodeCount struct {
	Addr  string
	Count int64
}

// Sent returns how many statements this process has sent to each node, by
// address.
func Sent() []NodeCount {
	var out []NodeCount
	sent.Range(func(k, v any) bool {
		out = append(out, NodeCount{Addr: k.(string), Count: v.(*atomic.Int64).Load()})
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// counting counts every statement sent through a connection.
type counting struct {
	driver.Conn
	n *atomic.Int64
}

func (c counting) Select(ctx context.Context, dest any, query string, args ...any) error {
	c.n.Add(1)
	return c.Conn.Select(ctx, dest, query, args...)
}

func (c counting) Query(ctx context.Context, query string, args ...any) (driver.Rows, error) {
	c.n.Add(1)
	return c.Conn.Query(ctx, query, args...)
}

func (c counting) QueryRow(ctx context.Context, query string, args ...any) driver.Row {
	c.n.Add(1)
	return c.Conn.QueryRow(ctx, query, args...)
}

func (c counting) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	c.n.Add(1)
	return c.Conn.PrepareBatch(ctx, query, opts...)
}

func (c counting) Exec(ctx context.Context, query string, args ...any) error {
	c.n.Add(1)
	return c.Conn.Exec(ctx, query, args...)
}

func (c counting) AsyncInsert(ctx context.Context, query string, wait bool, args ...any) error {
	c.n.Add(1)
	return c.Conn.AsyncInsert(ctx, query, wait, args...)
}
