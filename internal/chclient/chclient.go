// Package chclient opens native-protocol connections to ClickHouse nodes and
// reads what shirath needs to know about a server (its version).
package chclient

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Options configures a connection. The zero value connects as user default
// without a password to database default.
type Options struct {
	User     string
	Password string
	Database string
	// DialTimeout bounds connecting to a node, so that a node that is down is
	// reported quickly. Default 5s.
	DialTimeout time.Duration
	// MaxOpenConns bounds the pool. Default 4.
	MaxOpenConns int
}

// Open connects to one ClickHouse node by its native address (host:port) and
// pings it. The HTTP protocol is not used: clickhouse-go's HTTP mode sends
// settings that ClickHouse 18.16 refuses.
func Open(ctx context.Context, addr string, o Options) (driver.Conn, error) {
	if o.User == "" {
		o.User = "default"
	}
	if o.Database == "" {
		o.Database = "default"
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxOpenConns == 0 {
		o.MaxOpenConns = 4
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Protocol:         clickhouse.Native,
		Addr:             []string{addr},
		Auth:             clickhouse.Auth{Database: o.Database, Username: o.User, Password: o.Password},
		DialTimeout:      o.DialTimeout,
		MaxOpenConns:     o.MaxOpenConns,
		MaxIdleConns:     o.MaxOpenConns,
		ConnMaxLifetime:  time.Hour,
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
	})
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %s: %w", addr, err)
	}
	pctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to clickhouse %s: %w", addr, err)
	}
	return counting{Conn: conn, n: counter(addr)}, nil
}

// Version is a ClickHouse server version.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// CascadesThroughTarget reports whether rows an MV writes into its TO table
// fire the MVs that read that table. A behaviour, not a syntax: no probe
// tells it without creating tables, so it is read off the version. Seen
// here: ClickHouse 18.16 fires only the MVs that read the upstream MV's own
// name (FROM db.upstream_mv), never those reading its target; 26.7 fires
// those reading the target, never those reading the MV's name. Servers
// changed between the two (InterpreterInsertQuery into the target, 20.x);
// users run 23.x and later.
func (v Version) CascadesThroughTarget() bool { return v.Major >= 20 }

// AtLeast reports whether v >= major.minor.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

// ParseVersion reads "18.16.1" or "23.8.2.7".
func ParseVersion(s string) (Version, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 2 {
		return Version{}, fmt.Errorf("parse clickhouse version %q", s)
	}
	var n [3]int
	for i := 0; i < 3 && i < len(parts); i++ {
		x, err := strconv.Atoi(parts[i])
		if err != nil {
			return Version{}, fmt.Errorf("parse clickhouse version %q", s)
		}
		n[i] = x
	}
	return Version{n[0], n[1], n[2]}, nil
}

// ServerVersion asks the server for its version.
func ServerVersion(ctx context.Context, conn driver.Conn) (Version, error) {
	var s string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&s); err != nil {
		return Version{}, fmt.Errorf("read server version: %w", err)
	}
	return ParseVersion(s)
}
