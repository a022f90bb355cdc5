//go:build integration

package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

// TestAPIHostileConnections: a truncated body, headers sent slowly and a
// body sent slowly get the connection answered or closed within the
// server's timeouts, never a stored spec; the daemon keeps serving others
// meanwhile.
func TestAPIHostileConnections(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	s := env.Singles(t)[0]
	_, db := s.DB(t)
	const token = "hostile-token"
	d := servertest.Start(t, bin, servertest.Env{CHAddr: s.Addr, PGURL: env.PostgresDB(t), Token: token})
	u, err := url.Parse(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	body := designBody(db)
	head := fmt.Sprintf("POST /api/mv HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n", u.Host, token)

	// Truncated: the body ends before its Content-Length, and the client
	// stops writing.
	c := dial()
	fmt.Fprintf(c, "%sContent-Length: %d\r\n\r\n%s", head, len(body), body[:len(body)/2])
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, _ := bufio.NewReader(c).ReadString('\n')
	t.Logf("truncated body: %q", strings.TrimSpace(resp))
	if strings.Contains(resp, " 201 ") || strings.Contains(resp, " 200 ") {
		t.Fatalf("a truncated body was accepted: %q", resp)
	}

	// Slow headers: closed within ReadHeaderTimeout (10 s).
	start := time.Now()
	c = dial()
	fmt.Fprintf(c, "POST /api/mv HTTP/1.1\r\nHost: %s\r\n", u.Host)
	c.SetReadDeadline(time.Now().Add(40 * time.Second))
	b, _ := bufio.NewReader(c).ReadString('\n')
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("headers sent slowly held the connection %s (%q)", took, b)
	}
	t.Logf("slow headers: closed after %s (%q)", time.Since(start).Round(time.Second), strings.TrimSpace(b))

	// A slow body: one byte every 2 s; the server gives up within its
	// ReadTimeout (1 min) and stores nothing; other requests are served
	// meanwhile.
	start = time.Now()
	c = dial()
	fmt.Fprintf(c, "%sContent-Length: %d\r\n\r\n", head, len(body))
	done := make(chan string, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		line, _ := bufio.NewReader(c).ReadString('\n')
		done <- line
	}()
	var answer string
	for i := 0; answer == "" && i < len(body); i++ {
		if _, err := c.Write([]byte{body[i]}); err != nil {
			break
		}
		if r := do(t, "GET", d.URL+"/api/mv", token, ""); r.status != 200 {
			t.Fatalf("GET /api/mv while a body trickles in: %d", r.status)
		}
		select {
		case answer = <-done:
		case <-time.After(2 * time.Second):
		}
	}
	if answer == "" {
		select {
		case answer = <-done:
		case <-time.After(90 * time.Second):
		}
	}
	took := time.Since(start)
	t.Logf("slow body: %q after %s", strings.TrimSpace(answer), took.Round(time.Second))
	if took > 100*time.Second || strings.Contains(answer, " 201 ") {
		t.Fatalf("a body sent slowly: %q after %s", answer, took)
	}
	if r := do(t, "GET", d.URL+"/api/mv", token, ""); r.status != 200 || !bytes.Contains(r.body, []byte(`"jobs": []`)) {
		t.Fatalf("after the hostile connections the daemon stores: %d %s", r.status, r.body)
	}
}

// TestReadyzNamesWhatIsDown: /readyz answers 503 naming PostgreSQL while it
// is down, and 200 once it is back; on a cluster node it checks ZooKeeper
// too (ready while it answers).
func TestReadyzNamesWhatIsDown(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	pg := env.PrivatePostgres(t)
	d := servertest.Start(t, bin, servertest.Env{CHAddr: env.ClusterAddrs[0], PGURL: pg.URL})
	if r := do(t, "GET", d.URL+"/readyz", "", ""); r.status != 200 {
		t.Fatalf("readyz with every dependency up: %d %s", r.status, r.body)
	}
	pg.Kill(t)
	r := do(t, "GET", d.URL+"/readyz", "", "")
	if r.status != 503 || !bytes.Contains(r.body, []byte("postgresql")) {
		t.Fatalf("readyz with PostgreSQL down: %d %s", r.status, r.body)
	}
	t.Logf("readyz with PostgreSQL down: %s", r.body)
	pg.Start(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		r = do(t, "GET", d.URL+"/readyz", "", "")
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz 30 s after PostgreSQL came back: %d %s", r.status, r.body)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
