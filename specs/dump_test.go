package specs
import ("testing";"fmt";"os";"path/filepath";"strings";"errors")
func TestDump(t *testing.T){
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, f := range files {
		_, err := LoadPath(f)
		var es Errors
		errors.As(err, &es)
		data, _ := os.ReadFile(f)
		lines := strings.Split(string(data), "\n")
		for _, e := range es {
			at := ""
			if e.Line > 0 && e.Column > 0 {
				l := lines[e.Line-1]
				if e.Column-1 <= len(l) { at = l[e.Column-1:] }
				if len(at) > 14 { at = at[:14] }
			}
			msg := e.Msg
			if len(msg) > 50 { msg = msg[:50] }
			fmt.Printf("\t{%q, %d, %d, %q, %q, %q},\n", strings.TrimSuffix(filepath.Base(f), ".yaml"), e.Line, e.Column, e.Field, msg, at)
		}
	}
}
