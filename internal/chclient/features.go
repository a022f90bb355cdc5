package chclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Features is what a server can do, for every path of shirath that differs
// between ClickHouse versions. Each is asked of the server itself (its
// settings, the columns of its system tables, or a probe statement), never
// read off a version string: builds differ, and chDB's engine has no query
// log although its version is recent.
type Features struct {
	// DedupToken: the insert_deduplication_token setting (22.x+).
	DedupToken bool
	// NonReplicatedDedupWindow: the MergeTree setting
	// non_replicated_deduplication_window (21.x+).
	NonReplicatedDedupWindow bool
	// QueryLog: system.query_log exists (after a flush: the server creates
	// it on first use).
	QueryLog bool
	// QueryLogTypeEnum: query_log.type is an Enum (newer servers) rather
	// than a number (18.16).
	QueryLogTypeEnum bool
	// DistributionQueue: system.distribution_queue (19.x+).
	DistributionQueue bool
	// TablesUUID, TablesAsSelect: newer columns of system.tables.
	TablesUUID     bool
	TablesAsSelect bool
	// AtomicDatabases: Atomic databases exist (system.databases.uuid,
	// 20.x+). A table dropped there is freed late unless the drop is SYNC.
	AtomicDatabases bool
	// DropSync: DROP TABLE ... SYNC parses.
	DropSync bool
	// Exchange: EXCHANGE TABLES a AND b parses.
	Exchange bool
	// MovePartition: ALTER TABLE a MOVE PARTITION ... TO TABLE b parses.
	MovePartition bool
	// ModifyQuery: ALTER TABLE mv MODIFY QUERY parses.
	ModifyQuery bool
	// RefreshableMVs: system.view_refreshes exists (23.12+): CREATE
	// MATERIALIZED VIEW ... REFRESH EVERY, ALTER TABLE ... MODIFY REFRESH.
	RefreshableMVs bool
}

// probeDB names a database that never exists: a probe statement fails there
// either as a syntax error (the server does not know the statement) or
// because the database is missing (it does), and touches nothing.
const probeDB = "_shirath_probe_no_such_database_"

// syntaxError is ClickHouse's SYNTAX_ERROR code.
const syntaxError = 62

// DetectFeatures asks the server what it has.
func DetectFeatures(ctx context.Context, conn driver.Conn) (Features, error) {
	var f Features
	type check struct {
		dst *bool
		q   string
	}
	counts := []check{
		{&f.DedupToken, "SELECT count() FROM system.settings WHERE name = 'insert_deduplication_token'"},
		{&f.NonReplicatedDedupWindow, "SELECT count() FROM system.merge_tree_settings WHERE name = 'non_replicated_deduplication_window'"},
		{&f.DistributionQueue, "SELECT count() FROM system.tables WHERE database = 'system' AND name = 'distribution_queue'"},
		{&f.TablesUUID, "SELECT count() FROM system.columns WHERE database = 'system' AND table = 'tables' AND name = 'uuid'"},
		{&f.TablesAsSelect, "SELECT count() FROM system.columns WHERE database = 'system' AND table = 'tables' AND name = 'as_select'"},
		{&f.AtomicDatabases, "SELECT count() FROM system.columns WHERE database = 'system' AND table = 'databases' AND name = 'uuid'"},
		{&f.RefreshableMVs, "SELECT count() FROM system.tables WHERE database = 'system' AND name = 'view_refreshes'"},
	}
	for _, c := range counts {
		var n uint64
		if err := conn.QueryRow(ctx, c.q).Scan(&n); err != nil {
			return f, fmt.Errorf("detect server features (%s): %w", c.q, err)
		}
		*c.dst = n > 0
	}
	var err error
	if f.QueryLog, f.QueryLogTypeEnum, err = queryLog(ctx, conn); err != nil {
		return f, err
	}
	probes := []check{
		{&f.DropSync, "DROP TABLE IF EXISTS " + probeDB + ".a SYNC"},
		{&f.Exchange, "EXCHANGE TABLES " + probeDB + ".a AND " + probeDB + ".b"},
		{&f.MovePartition, "ALTER TABLE " + probeDB + ".a MOVE PARTITION tuple() TO TABLE " + probeDB + ".b"},
		{&f.ModifyQuery, "ALTER TABLE " + probeDB + ".a MODIFY QUERY SELECT 1"},
	}
	for _, p := range probes {
		if *p.dst, err = parses(ctx, conn, p.q); err != nil {
			return f, err
		}
	}
	return f, nil
}

// parses runs a probe statement against probeDB and reports whether the
// server's grammar knows it.
func parses(ctx context.Context, conn driver.Conn, q string) (bool, error) {
	err := conn.Exec(ctx, q)
	if err == nil {
		return true, nil
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		return ex.Code != syntaxError, nil
	}
	return false, fmt.Errorf("probe %q: %w", q, err)
}

func queryLog(ctx context.Context, conn driver.Conn) (present, enum bool, err error) {
	const q = "SELECT type FROM system.columns WHERE database = 'system' AND table = 'query_log' AND name = 'type'"
	types, err := Strings(ctx, conn, q)
	if err != nil {
		return false, false, fmt.Errorf("detect server features (%s): %w", q, err)
	}
	if len(types) == 0 {
		// The server creates its log tables on their first flush.
		if err := conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
			return false, false, fmt.Errorf("flush logs: %w", err)
		}
		if types, err = Strings(ctx, conn, q); err != nil {
			return false, false, fmt.Errorf("detect server features (%s): %w", q, err)
		}
	}
	if len(types) == 0 {
		return false, false, nil
	}
	return true, len(types[0]) >= 4 && types[0][:4] == "Enum", nil
}

// Strings runs a query whose rows are one string each.
func Strings(ctx context.Context, conn driver.Conn, q string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
