package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
)

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:4000": true,
		"127.0.0.2:0":    true,
		"[::1]:4000":     true,
		"localhost:4000": true,
		":4000":          false,
		"0.0.0.0:4000":   false,
		"[::]:4000":      false,
		"10.1.2.3:4000":  false,
	} {
		got, err := loopback(addr)
		if err != nil || got != want {
			t.Errorf("loopback(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
	if _, err := loopback("no-port"); err == nil {
		t.Error("loopback without a port: no error")
	}
}

// serve refuses a non-loopback address without a token, before it connects
// to anything.
func TestServeRefusesOpenAddressWithoutToken(t *testing.T) {
	var out, errb bytes.Buffer
	t.Setenv("SHIRATH_API_TOKEN", "")
	code := run([]string{"serve", "--listen", "0.0.0.0:0", "--postgres", "postgres://nobody@127.0.0.1:1/x"}, os.Stdin, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "without a token") {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
}

func TestServeToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte("  abc\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, tc := range []struct {
		cmd     ServeCmd
		want    string
		wantErr string
	}{
		{ServeCmd{}, "", ""},
		{ServeCmd{Token: " xyz "}, "xyz", ""},
		{ServeCmd{TokenFile: file}, "abc", ""},
		{ServeCmd{TokenFile: file, Token: "abc"}, "abc", ""},
		{ServeCmd{TokenFile: file, Token: "other"}, "", "different tokens"},
		{ServeCmd{TokenFile: empty}, "", "empty"},
	} {
		got, err := tc.cmd.token()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%+v: error %v, want %q", tc.cmd, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%+v: %q %v, want %q", tc.cmd, got, err, tc.want)
		}
	}
}

// The API's plan (planner.JSONView) prints exactly as plan --json does.
func TestJSONViewMatchesPlanJSON(t *testing.T) {
	s, err := specs.ParseJSON([]byte(`{"name": "by_cat", "source_table": "products", "engine": "SummingMergeTree()",
		"order_by": ["category"], "columns": [{"name": "category", "type": "String"}, {"name": "cnt", "type": "UInt64"}],
		"select_query": "SELECT category, count() AS cnt FROM {source_table} GROUP BY category"}`))
	if err != nil {
		t.Fatal(err)
	}
	p := &planner.Plan{FormatVersion: planner.FormatVersion, Fingerprint: "abc", Changes: []*planner.ResourceChange{
		{Database: "default", Name: "by_cat", Action: planner.Create, Reason: "new materialized view", Spec: s,
			Steps: []planner.Step{{Kind: planner.StepCreateTarget, Detail: "create", SQL: "CREATE TABLE x"}}},
		{Database: "default", Name: "old", Action: planner.Delete, Reason: "gone", Blocked: "no"},
	}}
	var cli bytes.Buffer
	if err := renderJSON(&cli, p); err != nil {
		t.Fatal(err)
	}
	api, err := json.MarshalIndent(planner.JSONView(p), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(cli.String()) != string(api) {
		t.Fatalf("plan --json and the API differ:\n%s\n---\n%s", cli.String(), api)
	}
}
