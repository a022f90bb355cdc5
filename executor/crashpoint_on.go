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

// Test builds (go build -tags crashpoints) die at a named crash point, as
// with SIGKILL, when SHIRATH_CRASH_AT names it: "name" dies at its first
// hit, "name:N" at its Nth hit in this process. Release builds ignore the
// variable: the function is empty there.
var crash struct {
	once sync.Once
	mu   sync.Mutex
	name string
	nth  int
	hits int
}

func crashPoint(name string) {
	crash.once.Do(func() {
		v := os.Getenv("SHIRATH_CRASH_AT")
		n, count, ok := strings.Cut(v, ":")
		crash.name, crash.nth = n, 1
		if ok {
			if c, err := strconv.Atoi(count); err == nil && c > 0 {
				crash.nth = c
			}
		}
	})
	if crash.name != name {
		return
	}
	crash.mu.Lock()
	crash.hits++
	hit := crash.hits == crash.nth
	crash.mu.Unlock()
	if hit {
		fmt.Fprintf(os.Stderr, "shirath: crash point %s (hit %d): SIGKILL\n", name, crash.nth)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
