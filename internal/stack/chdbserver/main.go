// Command chdbserver serves a modern ClickHouse engine (chDB's libchdb.so, the
// npm package @chdb/lib-linux-x64-gnu) on the native and HTTP protocols, so
// that shirath's tests run against a current ClickHouse beside 18.16.
//
// libchdb.so runs clickhouse-local; chdb_query_cmdline with listener ports
// starts real TCP and HTTP listeners when asked by SYSTEM START LISTEN, and
// they stay open while a query runs. That query reads a FIFO: the server lives
// until a line is written to it, which this program does on SIGTERM or
// SIGINT, so that the engine shuts down cleanly and flushes its tables.
//
//	chdbserver -lib libchdb.so -path DIR -tcp-port 19300 -http-port 18300
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ebitengine/purego"
)

func main() {
	lib := flag.String("lib", "", "path of libchdb.so")
	path := flag.String("path", "", "data directory (created if missing)")
	tcp := flag.Int("tcp-port", 0, "native protocol port on 127.0.0.1")
	http := flag.Int("http-port", 0, "HTTP port on 127.0.0.1")
	logFile := flag.String("log", "", "the engine's log file (warnings and errors)")
	child := flag.Bool("child", false, "run the engine in this process (the supervisor starts it so)")
	flag.Parse()
	if *lib == "" || *path == "" || *tcp == 0 || *http == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if !*child {
		os.Exit(supervise(*lib, *path, *logFile, *tcp, *http))
	}
	if err := run(*lib, *path, *logFile, *tcp, *http); err != nil {
		fmt.Fprintln(os.Stderr, "chdbserver:", err)
		os.Exit(1)
	}
}

func run(lib, path, logFile string, tcp, http int) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	fifo := filepath.Join(path, "stop.fifo")
	_ = os.Remove(fifo)
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return fmt.Errorf("make fifo %s: %w", fifo, err)
	}

	h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return fmt.Errorf("load %s: %w", lib, err)
	}
	var queryCmdline func(argc int32, argv **byte) uintptr
	purego.RegisterLibFunc(&queryCmdline, h, "chdb_query_cmdline")
	var resultError func(res uintptr) string
	purego.RegisterLibFunc(&resultError, h, "chdb_result_error")

	// The blocking read keeps the listeners open; storage_file_read_method
	// 'read' makes the file engine read the FIFO as a stream.
	query := fmt.Sprintf("SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; "+
		"SELECT count() FROM file('%s', 'LineAsString') SETTINGS storage_file_read_method = 'read'", fifo)
	args := []string{
		"clickhouse",
		"--path=" + path + "/",
		fmt.Sprintf("--tcp_port=%d", tcp),
		fmt.Sprintf("--http_port=%d", http),
		"--listen_host=127.0.0.1",
		"--multiquery",
		"--query=" + query,
	}
	if logFile != "" {
		args = append(args, "--logger.log="+logFile, "--log-level=warning")
	}
	argv := make([]*byte, len(args)+1)
	keep := make([][]byte, len(args))
	for i, a := range args {
		keep[i] = append([]byte(a), 0)
		argv[i] = &keep[i][0]
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	var stopping atomic.Bool
	go func() {
		s := <-sig
		stopping.Store(true)
		fmt.Fprintf(os.Stderr, "chdbserver: %s: stopping\n", s)
		// Opening the FIFO for writing blocks until the server reads it; the
		// line ends the blocking query and with it the server.
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.WriteString("stop\n")
			f.Close()
		}
	}()

	fmt.Fprintf(os.Stderr, "chdbserver: serving %s on 127.0.0.1:%d (native) and :%d (http)\n", path, tcp, http)
	res := queryCmdline(int32(len(args)), &argv[0])
	runtime.KeepAlive(keep)
	if res == 0 {
		return fmt.Errorf("the engine returned no result")
	}
	if msg := resultError(res); msg != "" {
		return fmt.Errorf("the engine stopped: %s", msg)
	}
	if !stopping.Load() {
		return fmt.Errorf("the engine stopped without a stop request")
	}
	fmt.Fprintln(os.Stderr, "chdbserver: stopped")
	return nil
}

// supervise runs the engine in a child process and starts it again when it
// dies without a stop request, as a service manager restarts a crashed
// server. Each death is reported with its exit status; the query that was
// running fails for its client, so no test passes through a crash unnoticed.
//
// The native port is served by a relay in this process (see relay): chDB's
// engine aborts when a client's connection is reset.
func supervise(lib, path, logFile string, tcp, http int) int {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", tcp))
	if err != nil {
		fmt.Fprintln(os.Stderr, "chdbserver:", err)
		return 1
	}
	var engine atomic.Value // the engine's native address
	engine.Store("")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go relay(c.(*net.TCPConn), func() string { return engine.Load().(string) })
		}
	}()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	quick := 0 // deaths in a row within 10s of a start: the engine cannot start
	for {
		port, err := freePort()
		if err != nil {
			fmt.Fprintln(os.Stderr, "chdbserver:", err)
			return 1
		}
		started := time.Now()
		cmd := exec.Command(os.Args[0], "-child", "-lib", lib, "-path", path, "-log", logFile,
			"-tcp-port", strconv.Itoa(port), "-http-port", strconv.Itoa(http))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "chdbserver:", err)
			return 1
		}
		engine.Store(fmt.Sprintf("127.0.0.1:%d", port))
		fmt.Fprintf(os.Stderr, "chdbserver: relaying 127.0.0.1:%d (native) to the engine on 127.0.0.1:%d\n", tcp, port)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case s := <-sig:
			cmd.Process.Signal(s)
			<-done
			return 0
		case err := <-done:
			if time.Since(started) < 10*time.Second {
				if quick++; quick == 3 {
					fmt.Fprintf(os.Stderr, "chdbserver: the engine died 3 times within 10s of starting (%v): giving up\n", err)
					return 1
				}
			} else {
				quick = 0
			}
			fmt.Fprintf(os.Stderr, "chdbserver: %s: the engine died (%v); starting it again\n", time.Now().Format(time.RFC3339), err)
			time.Sleep(time.Second)
		}
	}
}

// relay passes one client connection to the engine and back. chDB's engine
// (26.7) aborts the whole server on a connection reset by its peer: its
// TCPHandler logs "Connection reset by peer, while reading from socket" and
// rethrows, and the uncaught exception terminates the process (seen when
// tests SIGKILL a client whose socket still held unread data, which makes
// the kernel send a reset). A ClickHouse server takes a reset as the end of
// the connection, and so must the engine: the relay ends every connection to
// the engine with a FIN, whatever the client did. When the client is gone,
// the engine is told so by an end of file, and what it still sends is read
// and dropped until it closes, so that closing the relay's side never sends
// a reset either. While the engine restarts, a new connection waits for it
// for up to a minute.
func relay(client *net.TCPConn, engine func() string) {
	defer client.Close()
	var up *net.TCPConn
	for deadline := time.Now().Add(time.Minute); ; {
		if addr := engine(); addr != "" {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				up = c.(*net.TCPConn)
				break
			}
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer up.Close()
	go func() {
		io.Copy(up, client) // until the client closes, or its connection fails
		up.CloseWrite()
	}()
	if _, err := io.Copy(client, up); err != nil {
		io.Copy(io.Discard, up)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
