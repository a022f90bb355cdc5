//go:build !crashpoints

package executor

// crashPoint marks a place where a test build can make the process die as
// with SIGKILL (see crashpoint_on.go). Release builds compile it away.
func crashPoint(string) {}
