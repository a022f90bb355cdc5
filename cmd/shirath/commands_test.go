package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestPlanFormatFlags covers the flags refused before any server is asked.
func TestPlanFormatFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"plan", "--json", "--format", "markdown", "specs"}, "--json and --format markdown disagree"},
		{[]string{"plan", "-json", "-format=markdown", "specs"}, "--json and --format markdown disagree"},
		{[]string{"plan", "--format", "html", "specs"}, `--format must be one of "human","json","markdown" but got "html"`},
	} {
		var out, errb bytes.Buffer
		code := run(tt.args, os.Stdin, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tt.want) {
			t.Errorf("shirath %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tt.args, " "), code, errb.String(), tt.want)
		}
	}
}
