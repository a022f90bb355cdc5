package executor

import (
	"context"
	"time"

	"github.com/shirath/shirath/internal/chclient"
)

// readRetryPause is the wait before a read that failed transiently is sent
// again (a variable for the tests).
var readRetryPause = 500 * time.Millisecond

// readRetry runs read, and once more after readRetryPause when it failed
// transiently (chclient.Transient: a read timeout, a connection reset) and
// ctx is not done; onRetry hears of the first failure. Only for statements
// that write nothing: sending one twice must be harmless.
func readRetry(ctx context.Context, read func() error, onRetry func(error)) error {
	err := read()
	if err == nil || ctx.Err() != nil || !chclient.Transient(err) {
		return err
	}
	onRetry(err)
	select {
	case <-ctx.Done():
		return err
	case <-time.After(readRetryPause):
	}
	return read()
}
