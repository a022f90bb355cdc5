package chclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestCoordinationLost(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("DROP TABLE on n1: %w", &clickhouse.Exception{Code: 999, Message: "Session expired"}), true},
		{&clickhouse.Exception{Code: 242, Message: "Table is in readonly mode"}, true},
		{&clickhouse.Exception{Code: 225, Message: "Cannot use ZooKeeper"}, true},
		{errors.New("Coordination::Exception: Connection loss"), true},
		{&clickhouse.Exception{Code: 60, Message: "Table doesn't exist"}, false},
		{errors.New("dial tcp: connection refused"), false},
		{nil, false},
	}
	for _, c := range cases {
		if got := CoordinationLost(c.err); got != c.want {
			t.Errorf("CoordinationLost(%v) = %v, want %v", c.err, got, c.want)
		}
		if got := Explain(c.err) != ""; got != c.want {
			t.Errorf("Explain(%v) says something: %v, want %v", c.err, got, c.want)
		}
	}
}

func TestTransient(t *testing.T) {
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"read timeout", fmt.Errorf("read: %w", timeout), true},
		{"connection reset", fmt.Errorf("count: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), true},
		{"broken pipe", fmt.Errorf("write: %w", syscall.EPIPE), true},
		{"end of stream", fmt.Errorf("read: %w", io.EOF), true},
		{"connection closed", clickhouse.ErrConnectionClosed, true},
		{"message only", errors.New("read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"), true},
		{"server exception", &clickhouse.Exception{Code: 159, Message: "Timeout exceeded: elapsed 5 seconds, i/o timeout"}, false},
		{"context ended", fmt.Errorf("count: %w", context.DeadlineExceeded), false},
		{"canceled", context.Canceled, false},
		{"connection refused", errors.New("dial tcp 127.0.0.1:9000: connect: connection refused"), false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if got := Transient(c.err); got != c.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
