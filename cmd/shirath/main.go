// Command shirath manages ClickHouse materialized views declaratively: plan,
// apply, and the daemon with its REST API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/term"

	"github.com/shirath/shirath/executor"
	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/state"
)

// Globals are the flags every command takes, each with its environment variable.
type Globals struct {
	ClickHouse string `name:"clickhouse" env:"SHIRATH_CH_ADDR" default:"127.0.0.1:9000" help:"Native address (host:port) of a ClickHouse node; on a cluster, any node of it."`
	CHUser     string `name:"ch-user" env:"SHIRATH_CH_USER" default:"default" help:"ClickHouse user."`
	CHPassword string `name:"ch-password" env:"SHIRATH_CH_PASSWORD" help:"ClickHouse password."`
	Postgres   string `name:"postgres" env:"SHIRATH_PG_URL" default:"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" help:"PostgreSQL URL of the job store."`
	LogLevel   string `name:"log-level" env:"SHIRATH_LOG_LEVEL" default:"warn" enum:"trace,debug,info,warn,error" help:"Log level (${enum})."`
	LogJSON    bool   `name:"log-json" env:"SHIRATH_LOG_JSON" help:"Log as JSON lines."`
}

// CLI is the command line.
type CLI struct {
	Globals

	Plan     PlanCmd     `cmd:"" help:"Show what apply would do."`
	Apply    ApplyCmd    `cmd:"" help:"Apply specs or a saved plan."`
	Validate ValidateCmd `cmd:"" help:"Validate spec files."`
	Import   ImportCmd   `cmd:"" help:"Write spec files for live MVs made without shirath, for plan to adopt."`
	Migrate  MigrateCmd  `cmd:"" help:"Apply the job store's migrations."`
	Status   StatusCmd   `cmd:"" help:"Show MV jobs and their progress."`
	Verify   VerifyCmd   `cmd:"" help:"Compare each MV's target with its query over the whole source (exit 0: all match, 1: a difference, 2: an error)."`
	Serve    ServeCmd    `cmd:"" help:"Run the reconcile loop and the REST API."`
	MV       MVCmd       `cmd:"" name:"mv" help:"Create, list, inspect, backfill and drop MVs, directly or through a running server."`
}

// exitError carries a specific exit code (plan --detailed-exitcode).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// app holds what commands share: made once in main, handed down by binding.
type app struct {
	g      *Globals
	log    hclog.Logger
	stdout io.Writer
	stderr io.Writer
	stdin  *os.File
	// parallelism is apply's -parallelism (0: not given): the connection
	// pools must hold a query of every MV and shard stream at once.
	parallelism int
}

func (a *app) isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

func (a *app) stdoutTTY() bool {
	f, ok := a.stdout.(*os.File)
	return ok && a.isTerminal(f)
}

// store opens the job store, scoped to the deployments the ClickHouse seed
// belongs to: one job store may serve several deployments, and a command
// sees only the jobs of the one it is connected to.
func (a *app) store(ctx context.Context) (*state.Store, error) {
	conn := a.connector()
	defer conn.Close()
	deployments, err := conn.Deployments(ctx)
	if err != nil {
		return nil, fmt.Errorf("identify the ClickHouse deployment (the job store shows each deployment its own jobs): %w", err)
	}
	st, err := state.Open(ctx, a.g.Postgres)
	if err != nil {
		return nil, err
	}
	st.SetScope(deployments)
	a.log.Debug("job store scoped", "deployments", deployments)
	return st, nil
}

func (a *app) connector() *planner.Connector {
	return &planner.Connector{
		Seed: a.g.ClickHouse,
		// A node runs at most one query per MV applied at once (its shard
		// streams go to distinct nodes), plus the planner's: a pool too small
		// makes clickhouse-go fail an acquire after its dial timeout.
		Options: chclient.Options{User: a.g.CHUser, Password: a.g.CHPassword, MaxOpenConns: max(a.parallelism, executor.DefaultParallelism) + 4},
		Log:     a.log.Named("clickhouse"),
	}
}

// terraformFlags accepts Terraform's single-dash long flags (plan -out FILE,
// -detailed-exitcode, -destroy) by turning them into kong's double-dash form.
func terraformFlags(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if len(a) > 2 && a[0] == '-' && a[1] >= 'a' && a[1] <= 'z' && a[2] != ' ' {
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && strings.Trim(name, "abcdefghijklmnopqrstuvwxyz-") == "" {
				out[i] = "-" + a
			}
		}
	}
	return out
}

// logSent logs, at debug level, how many statements the command sent to
// each ClickHouse node (what a plan costs a node can be checked with it).
func logSent(log hclog.Logger, before []chclient.NodeCount) {
	was := map[string]int64{}
	for _, c := range before {
		was[c.Addr] = c.Count
	}
	for _, c := range chclient.Sent() {
		if n := c.Count - was[c.Addr]; n > 0 {
			log.Debug("clickhouse statements sent", "node", c.Addr, "count", n)
		}
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("shirath"),
		kong.Description("Declarative ClickHouse materialized views: plan, apply, serve."),
		kong.UsageOnError(),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitError{code}) }),
	)
	if err != nil {
		fmt.Fprintln(stderr, "shirath:", err)
		return 1
	}
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				if e, ok := r.(exitError); ok {
					code = e.code
					return
				}
				panic(r)
			}
		}()
		kctx, err := parser.Parse(terraformFlags(args))
		if err != nil {
			fmt.Fprintln(stderr, "shirath:", err)
			code = 2
			return
		}
		log := hclog.New(&hclog.LoggerOptions{
			Name:       "shirath",
			Level:      hclog.LevelFromString(cli.LogLevel),
			Output:     stderr,
			JSONFormat: cli.LogJSON,
		})
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		a := &app{g: &cli.Globals, log: log, stdout: stdout, stderr: stderr, stdin: stdin}
		kctx.BindTo(ctx, (*context.Context)(nil))
		before := chclient.Sent()
		err = kctx.Run(a)
		logSent(log, before)
		var ee exitError
		switch {
		case errors.As(err, &ee):
			code = ee.code
		case err != nil:
			fmt.Fprintf(stderr, "Error: %v\n", err)
			code = 1
		}
	}()
	return code
}
