// Package servertest runs the shirath binary as a daemon for integration
// tests: built once per test process (with the race detector when the tests
// have it), started on a free port, stopped with SIGTERM. It also holds the
// fixtures those tests share: the design's products table and the check
// that a target holds its exact aggregate.
package servertest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/openapi"
	"github.com/shirath/shirath/internal/server"
)

// Build builds cmd/shirath of the module at root into a temporary directory
// and returns the binary's path and a function that removes it.
func Build(root string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "shirath-bin-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "shirath")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/shirath")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// Main is the TestMain of a package that runs the binary: it builds
// cmd/shirath of the module at root into *bin, runs the tests and removes
// the binary.
func Main(m *testing.M, root string, bin *string) {
	b, cleanup, err := Build(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = b
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// Daemon is one running `shirath serve`.
type Daemon struct {
	URL string
	t   testing.TB // that started it: Client's checks fail it
	cmd *exec.Cmd
	log *syncBuffer
	out *syncBuffer

	done    chan struct{}
	waitErr error
}

// Env is the environment of a daemon: the servers it talks to and the
// API token ("" for none).
type Env struct {
	CHAddr string
	PGURL  string
	Token  string
}

// Start runs `bin serve --listen 127.0.0.1:0 args...` and waits until it
// serves. The daemon is stopped (SIGTERM) when the test ends, and its log
// is shown when the test failed.
func Start(t testing.TB, bin string, env Env, args ...string) *Daemon {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--log-level", "debug", "--log-json"}, args...)...)
	cmd.Env = append(cleanEnv(), "SHIRATH_CH_ADDR="+env.CHAddr, "SHIRATH_PG_URL="+env.PGURL)
	if env.Token != "" {
		cmd.Env = append(cmd.Env, "SHIRATH_API_TOKEN="+env.Token)
	}
	d := &Daemon{t: t, cmd: cmd, log: &syncBuffer{}, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = d.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start daemon: %v", err)
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			d.out.Write([]byte(line + "\n"))
			if u, ok := strings.CutPrefix(line, "shirath: serving the API on "); ok {
				urlc <- u
			}
		}
	}()
	go func() {
		d.waitErr = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("daemon: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon log without the successful GETs (last 20000 bytes):\n%s", d.Log(20000))
		}
	})
	select {
	case d.URL = <-urlc:
	case <-d.done:
		t.Fatalf("daemon exited at start: %v\n%s", d.waitErr, d.Log(20000))
	case <-time.After(60 * time.Second):
		t.Fatalf("daemon did not start within 60s\n%s", d.Log(20000))
	}
	return d
}

// cleanEnv is the test's environment without any SHIRATH_ variable, so that
// a developer's settings do not leak into the daemon.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SHIRATH_") {
			out = append(out, kv)
		}
	}
	return out
}

// Stop sends SIGTERM and waits for the daemon to exit; an exit code other
// than 0 (a race the detector found exits with 66) is an error. Stopping a
// stopped daemon does nothing.
func (d *Daemon) Stop() error {
	select {
	case <-d.done:
		return d.exitErr()
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return d.exitErr()
	case <-time.After(2 * time.Minute):
		_ = d.cmd.Process.Kill()
		<-d.done
		return errors.New("did not stop within 2 minutes of SIGTERM")
	}
}

func (d *Daemon) exitErr() error {
	if d.waitErr != nil {
		return fmt.Errorf("exited with %v", d.waitErr)
	}
	return nil
}

// Stdout is what the daemon printed on stdout so far.
func (d *Daemon) Stdout() string { return d.out.String() }

// Log returns the last n bytes of the daemon's stderr, without the debug
// lines of successful GETs: WaitFor polls every 50ms, and those lines would
// push everything the daemon did out of the last n bytes.
func (d *Daemon) Log(n int) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(d.log.String(), "\n") {
		if strings.Contains(line, `"@level":"debug","@message":"request"`) {
			continue
		}
		b.WriteString(line)
	}
	s := b.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// Client returns an API client of the daemon; every answer it gets is
// checked against the OpenAPI document, and a mismatch fails the test that
// started the daemon.
func (d *Daemon) Client(token string) *server.Client {
	return &server.Client{BaseURL: d.URL, Token: token, HTTP: HTTPClient(d.t)}
}

var apiDoc = sync.OnceValues(func() (*openapi.Doc, error) { return openapi.Load(server.OpenAPI()) })

// HTTPClient is an HTTP client that checks every request it sends and the
// answer it gets against the daemon's OpenAPI document (documented route,
// status, content type, headers, and the JSON bodies against their
// schemas); a mismatch fails t.
func HTTPClient(t testing.TB) *http.Client {
	t.Helper()
	doc, err := apiDoc()
	if err != nil {
		t.Fatalf("the OpenAPI document: %v", err)
	}
	return &http.Client{Timeout: 10 * time.Minute, Transport: &openapi.Transport{Doc: doc, Report: func(err error) {
		t.Errorf("the OpenAPI document does not describe this answer of the daemon: %v", err)
	}}}
}

// WaitFor polls the MV until done returns true, and fails the test after
// timeout. Every MV seen is passed to done, in order.
func WaitFor(t testing.TB, c *server.Client, key string, timeout time.Duration, done func(*server.MV) bool) *server.MV {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last *server.MV
	for {
		mv, err := c.Get(ctx, key)
		if err == nil {
			last = mv
			if done(mv) {
				return mv
			}
		} else if ctx.Err() == nil {
			t.Logf("GET %s: %v", key, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: condition not reached within %s; last seen: %+v", key, timeout, describe(last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func describe(mv *server.MV) string {
	if mv == nil {
		return "nothing"
	}
	s := fmt.Sprintf("status %s, %d/%d rows", mv.Status, mv.ProcessedRows, mv.TotalRows)
	if mv.ErrorMessage != nil {
		s += ", error: " + *mv.ErrorMessage
	}
	if r := mv.Reconcile; r != nil {
		s += fmt.Sprintf(", reconcile %s (%s) %s", r.State, r.Reason, r.Message)
	}
	return s
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
