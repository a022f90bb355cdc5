//go:build crashpoints

package executor

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// crashPointsOn makes points.go place a point before and after every
// ClickHouse statement and job store commit.
const crashPointsOn = true

// Test builds (go build -tags crashpoints) die at a named crash point, as
// with SIGKILL, when SHIRATH_CRASH_AT names it: "name" dies at its first
// hit, "name:N" at its Nth hit in this process. With SHIRATH_CRASH_TRACE=FILE
// every hit is appended to FILE, one name a line, in order, before the
// process dies there: a test learns every point an apply passes. Release
// builds ignore both variables: the function is empty there.
var crash struct {
	once  sync.Once
	mu    sync.Mutex
	name  string
	nth   int
	hits  int
	trace *os.File
}

func crashPoint(name string) {
	crash.once.Do(func() {
		// Names have colons of their own ("before:commit:..."): only a
		// number after the last one is a hit count.
		v := os.Getenv("SHIRATH_CRASH_AT")
		crash.name, crash.nth = v, 1
		if i := strings.LastIndex(v, ":"); i >= 0 {
			if c, err := strconv.Atoi(v[i+1:]); err == nil && c > 0 {
				crash.name, crash.nth = v[:i], c
			}
		}
		if p := os.Getenv("SHIRATH_CRASH_TRACE"); p != "" {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				fmt.Fprintf(os.Stderr, "shirath: SHIRATH_CRASH_TRACE: %v\n", err)
			}
			crash.trace = f
		}
	})
	crash.mu.Lock()
	if crash.trace != nil {
		// One write per hit, unbuffered: it is on file when the process dies.
		crash.trace.WriteString(name + "\n")
	}
	hit := false
	if crash.name == name {
		crash.hits++
		hit = crash.hits == crash.nth
	}
	crash.mu.Unlock()
	if hit {
		fmt.Fprintf(os.Stderr, "shirath: crash point %s (hit %d): SIGKILL\n", name, crash.nth)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
