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
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
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
		os.Exit(supervise())
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
// server: chDB's engine has been seen to die under the test suite's load
// (a SIGKILLed client in the middle of DDL) with nothing in its log. Each
// death is reported with its exit status; the query that was running fails
// for its client, so no test passes through a crash unnoticed.
func supervise() int {
	args := append([]string{"-child"}, os.Args[1:]...)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	quick := 0 // deaths in a row within 10s of a start: the engine cannot start
	for {
		started := time.Now()
		cmd := exec.Command(os.Args[0], args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "chdbserver:", err)
			return 1
		}
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
