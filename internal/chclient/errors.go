package chclient

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Error codes of a server that lost ZooKeeper (or ClickHouse Keeper): its
// session expired or was never made (KEEPER_EXCEPTION, NO_ZOOKEEPER), or a
// Replicated table is read-only until the session is back
// (TABLE_IS_READ_ONLY).
const (
	codeKeeper       = 999
	codeNoZooKeeper  = 225
	codeReadOnlyRepl = 242
)

// CoordinationLost reports whether err says that the server has no working
// session with ZooKeeper: Replicated tables and ON CLUSTER statements then
// fail until it is back.
func CoordinationLost(err error) bool {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		switch ex.Code {
		case codeKeeper, codeNoZooKeeper, codeReadOnlyRepl:
			return true
		}
	}
	return err != nil && strings.Contains(err.Error(), "Coordination::")
}

// Explain adds what an operator should check to a server error whose
// message does not say it: "" when there is nothing to add.
func Explain(err error) string {
	if CoordinationLost(err) {
		return "the node has no working ZooKeeper session (ZooKeeper down or unreachable, or the session is being re-established): " +
			"Replicated tables and ON CLUSTER statements need it; apply again once ZooKeeper answers"
	}
	return ""
}

// Transient reports whether err is a failure of the connection rather than
// an answer of the server: a read or write timeout, a connection reset or
// closed under the client, an unexpected end of stream. A read that failed
// so can be sent again on another connection; a statement the server
// refused (an Exception) or a context that ended cannot.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, clickhouse.ErrConnectionClosed) {
		return true
	}
	// Some paths of the driver keep only the message.
	msg := err.Error()
	for _, s := range []string{"i/o timeout", "connection reset by peer", "broken pipe", "unexpected EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
