//go:build !crashpoints

package executor

// crashPointsOn is false in release builds: the points around every
// statement and commit (points.go) cost one branch.
const crashPointsOn = false

// crashPoint marks a place where a test build can make the process die as
// with SIGKILL (see crashpoint_on.go). Release builds compile it away.
func crashPoint(string) {}
