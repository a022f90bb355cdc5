package chclient

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// RefreshState is a refreshable MV's state in system.view_refreshes.
type RefreshState struct {
	Status string `json:"status"`
	// LastSuccess and NextRefresh are nil when there is none (yet).
	LastSuccess *time.Time `json:"last_success"`
	NextRefresh *time.Time `json:"next_refresh"`
	// Exception is the last refresh's error, "" when it succeeded.
	Exception string `json:"exception"`
}

// ReadRefreshState reads the state of the refreshable MV db.view.
func ReadRefreshState(ctx context.Context, conn driver.Conn, db, view string) (*RefreshState, error) {
	const q = "SELECT toString(status), toInt64(toUnixTimestamp(ifNull(last_success_time, toDateTime(0)))), " +
		"toInt64(toUnixTimestamp(ifNull(next_refresh_time, toDateTime(0)))), toString(exception) " +
		"FROM system.view_refreshes WHERE database = ? AND view = ?"
	var st RefreshState
	var last, next int64
	if err := conn.QueryRow(ctx, q, db, view).Scan(&st.Status, &last, &next, &st.Exception); err != nil {
		return nil, fmt.Errorf("read system.view_refreshes for %s.%s: %w", db, view, err)
	}
	if last > 0 {
		t := time.Unix(last, 0).UTC()
		st.LastSuccess = &t
	}
	if next > 0 {
		t := time.Unix(next, 0).UTC()
		st.NextRefresh = &t
	}
	return &st, nil
}
