package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shirath/shirath/executor"
	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/internal/server"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/state"
)

// ServeCmd is `shirath serve`: the reconcile loop and the REST API.
type ServeCmd struct {
	Listen       string        `name:"listen" env:"SHIRATH_LISTEN" default:"127.0.0.1:4000" help:"Address of the API (host:port; port 0 picks a free one, printed on stdout)."`
	Specs        string        `name:"specs" type:"existingdir" help:"Directory of spec files, read again on every scan; its MVs are desired alongside those stored through the API."`
	Workers      int           `name:"workers" default:"2" help:"MVs reconciled at once."`
	Resync       time.Duration `name:"resync" default:"5m" help:"How often an MV that is up to date is checked again (drift, lost objects)."`
	ScanInterval time.Duration `name:"scan-interval" default:"10s" help:"How often the desired specs (store and --specs) are listed for new and changed ones."`
	TokenFile    string        `name:"token-file" env:"SHIRATH_API_TOKEN_FILE" type:"existingfile" help:"File holding the API token required on every /api route."`
	Token        string        `name:"token" env:"SHIRATH_API_TOKEN" hidden:"" help:"API token (prefer the environment variable or --token-file: a flag shows in ps)."`
	Headroom     time.Duration `name:"fence-headroom" default:"3s" help:"Seconds of the observed insert rate the fence leaves above max(key)."`
	SourceWait   time.Duration `name:"source-wait" default:"15s" help:"How long one reconcile waits for the source to pass the fence before looking again later."`
	Prune        bool          `name:"prune" help:"Drop an MV whose spec file (under --specs) this daemon loaded and which was then removed. Without it the daemon never drops an MV; prevent_destroy still protects."`
	BackoffBase  time.Duration `name:"backoff-base" default:"2s" hidden:"" help:"First retry delay of a failing MV; doubled on every failure."`
	BackoffMax   time.Duration `name:"backoff-max" default:"5m" hidden:"" help:"Longest retry delay."`
}

func (c *ServeCmd) Run(a *app, ctx context.Context) error {
	token, err := c.token()
	if err != nil {
		return err
	}
	if token == "" {
		local, err := loopback(c.Listen)
		if err != nil {
			return err
		}
		if !local {
			return fmt.Errorf("refusing to serve the API on %s without a token: set SHIRATH_API_TOKEN or --token-file, or listen on 127.0.0.1", c.Listen)
		}
	}
	log := a.log
	if f, ok := a.stderr.(*os.File); a.g.LogJSON || !ok || !a.isTerminal(f) {
		// A daemon's logs go to a collector: JSON lines.
		log = hclog.New(&hclog.LoggerOptions{Name: "shirath", Level: a.log.GetLevel(), Output: a.stderr, JSONFormat: true})
	}
	st, err := state.Open(ctx, a.g.Postgres)
	if err != nil {
		return err
	}
	defer st.Close()
	// The daemon must never act on, nor show, another deployment's jobs:
	// it serves once it knows its own.
	if err := a.scopeWhenReachable(ctx, st, log); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Listen, err)
	}
	fmt.Fprintf(a.stdout, "shirath: serving the API on http://%s\n", ln.Addr())
	srv := server.New(server.Config{
		Store: st,
		Connect: func() *planner.Connector {
			return &planner.Connector{
				Seed:    a.g.ClickHouse,
				Options: chclient.Options{User: a.g.CHUser, Password: a.g.CHPassword},
				Log:     log.Named("clickhouse"),
			}
		},
		Log:          log,
		SpecDir:      c.Specs,
		Prune:        c.Prune,
		Workers:      c.Workers,
		Resync:       c.Resync,
		ScanInterval: c.ScanInterval,
		BackoffBase:  c.BackoffBase,
		BackoffMax:   c.BackoffMax,
		Token:        token,
		Executor:     executor.Options{FenceHeadroom: c.Headroom, SourceWaitTimeout: c.SourceWait},
	})
	err = srv.Run(ctx, ln)
	fmt.Fprintln(a.stdout, "shirath: stopped")
	return err
}

func (c *ServeCmd) token() (string, error) {
	if c.TokenFile == "" {
		return strings.TrimSpace(c.Token), nil
	}
	b, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", c.TokenFile)
	}
	if c.Token != "" && strings.TrimSpace(c.Token) != tok {
		return "", errors.New("both --token-file and SHIRATH_API_TOKEN are set, to different tokens: keep one")
	}
	return tok, nil
}

// loopback reports whether every address the listen address can bind to is
// a loopback address. An empty host binds every interface.
func loopback(listen string) (bool, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false, fmt.Errorf("listen address %q: %w", listen, err)
	}
	if host == "" {
		return false, nil
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		return ip.IsLoopback(), nil
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return false, fmt.Errorf("listen address %q: %w", listen, err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false, nil
		}
	}
	return len(ips) > 0, nil
}

// scopeWhenReachable scopes the daemon's job store to its deployments once
// ClickHouse answers, trying again every few seconds until it does.
func (a *app) scopeWhenReachable(ctx context.Context, st *state.Store, log hclog.Logger) error {
	for {
		conn := a.connector()
		deployments, err := conn.Deployments(ctx)
		conn.Close()
		if err == nil {
			st.SetScope(deployments)
			log.Info("job store scoped to this ClickHouse deployment", "deployments", deployments)
			return nil
		}
		log.Warn("cannot identify the ClickHouse deployment yet: the daemon serves once it can", "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(3 * time.Second):
		}
	}
}
