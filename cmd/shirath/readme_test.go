package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/shirath/shirath/specs"
)

// The README's examples are checked against the code so that they never
// drift: its ```yaml specs load with the real loader, every command of its
// ```sh blocks is parsed by kong against the real CLI (and make targets,
// environment variables, package paths and the REST API's routes are
// looked up), and readme_integration_test.go runs its curl examples
// against a real daemon. The README is read at test time, so an example
// added later is checked too, and a command no check knows fails the test.

const readmePath = "../../README.md"

// readmeBlock is one fenced code block of the README.
type readmeBlock struct {
	lang string
	line int // of the block's first line, after the fence
	text string
}

func readmeText(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readmeBlocks(t testing.TB) []readmeBlock {
	t.Helper()
	var blocks []readmeBlock
	var cur *readmeBlock
	for i, line := range strings.Split(readmeText(t), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &readmeBlock{lang: strings.TrimSpace(strings.TrimPrefix(line, "```")), line: i + 2}
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("README.md:%d: code block not closed", cur.line-1)
	}
	return blocks
}

// shellCommand is one command of a ```sh block: its lines joined where a
// quote is still open or a line ends with a backslash.
type shellCommand struct {
	line    int    // in the README
	text    string // as written, without the trailing comment
	comment string
	words   []string // as the shell splits them, quotes removed
}

// shellCommands splits a block into commands. Brackets around optional
// parts ("[--database db]", "[NAME]") are dropped: the command is checked
// with every optional part written.
func shellCommands(t testing.TB, b readmeBlock) []shellCommand {
	t.Helper()
	var out []shellCommand
	lines := strings.Split(strings.TrimSuffix(b.text, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) == "" {
			continue
		}
		start, text := i, lines[i]
		for {
			words, comment, open := shellWords(text)
			if !open {
				out = append(out, shellCommand{line: b.line + start, text: strings.TrimSpace(strings.TrimSuffix(text, comment)),
					comment: strings.TrimSpace(strings.TrimPrefix(comment, "#")), words: words})
				break
			}
			if i++; i >= len(lines) {
				t.Fatalf("README.md:%d: command not finished at the end of its block", b.line+start)
			}
			text += "\n" + lines[i]
		}
	}
	return out
}

// shellWords splits s as sh would (quotes, backslashes, $(...)), returns
// the comment that ends it, and reports whether the command goes on (an
// open quote or a trailing backslash).
func shellWords(s string) (words []string, comment string, open bool) {
	var w strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, w.String())
		}
		w.Reset()
		inWord = false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, "", true
			}
			w.WriteString(s[i+1 : i+1+end])
			inWord = true
			i += end + 1
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
				}
			}
			if j >= len(s) {
				return nil, "", true
			}
			w.WriteString(s[i+1 : j])
			inWord = true
			i = j
		case c == '\\' && i+1 < len(s) && s[i+1] == '\n':
			flush()
			i++
		case c == '\\' && i+1 == len(s):
			return nil, "", true
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				return nil, "", true
			}
			w.WriteString(s[i : i+end+1])
			inWord = true
			i += end
		case c == ' ' || c == '\t' || c == '\n':
			flush()
		case c == '#' && !inWord:
			flush()
			return words, s[i:], false
		case c == '[' && !inWord:
			// "[--specs DIR]": an optional part, checked as written.
		case c == ']' && (i+1 == len(s) || strings.IndexByte(" \t\n", s[i+1]) >= 0):
			flush()
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words, "", false
}

// newCLIParser builds the command line as main does, without running it.
func newCLIParser(t testing.TB) (*CLI, *kong.Kong) {
	t.Helper()
	var cli CLI
	p, err := kong.New(&cli, kong.Name("shirath"), kong.Exit(func(code int) { panic(exitError{code}) }))
	if err != nil {
		t.Fatal(err)
	}
	return &cli, p
}

// cliFlags returns every flag of the command line by name ("--specs", and
// "-f" for a short one), and every environment variable a flag reads.
func cliFlags(t testing.TB) (map[string]*kong.Flag, map[string]bool) {
	_, p := newCLIParser(t)
	flags, envs := map[string]*kong.Flag{}, map[string]bool{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			flags["--"+f.Name] = f
			if f.Short != 0 {
				flags["-"+string(f.Short)] = f
			}
			for _, e := range f.Envs {
				envs[e] = true
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(p.Model.Node)
	return flags, envs
}

// readmeSpecs is every ```yaml block of the README that holds a spec.
func readmeSpecs(t testing.TB) []readmeBlock {
	var out []readmeBlock
	for _, b := range readmeBlocks(t) {
		if b.lang == "yaml" || b.lang == "yml" {
			out = append(out, b)
		}
	}
	return out
}

// designHash is the hash of examples/products_by_category.yaml, the
// original design's example, which the README shows as YAML and as the
// body of its curl example.
func designHash(t testing.TB) string {
	t.Helper()
	ss, err := specs.LoadPath("../../examples/products_by_category.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return specs.Hash(ss[0])
}

// TestREADMESpecs loads every YAML spec of the README with the real loader;
// the first is the original design's example, "unchanged".
func TestREADMESpecs(t *testing.T) {
	blocks := readmeSpecs(t)
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```yaml spec")
	}
	for i, b := range blocks {
		// Blank lines before the block make errors point at README lines.
		ss, err := specs.ParseYAML("README.md", []byte(strings.Repeat("\n", b.line-1)+b.text))
		if err != nil {
			t.Errorf("the spec at README.md:%d does not load:\n%v", b.line, err)
			continue
		}
		if len(ss) == 0 {
			t.Errorf("README.md:%d: an empty yaml block", b.line)
		}
		if i == 0 && len(ss) > 0 && specs.Hash(ss[0]) != designHash(t) {
			t.Errorf("README.md:%d: the design's example differs from examples/products_by_category.yaml", b.line)
		}
	}
}

// readmeRoute is a row of the README's API table.
type readmeRoute struct {
	method string
	re     *regexp.Regexp // the path, {name} matching one segment
	path   string
	status int    // the first 2xx the row documents, else 200
	key    string // the first JSON key the row shows, e.g. job in {"job": ...}
	value  string // its value when the row shows a literal string
}

var (
	routeRowRE = regexp.MustCompile("^\\| `(GET|POST|PUT|PATCH|DELETE) (/[^`]*)` \\|(.*)\\|\\s*$")
	status2xx  = regexp.MustCompile(`\b(2\d\d)\b`)
	jsonShape  = regexp.MustCompile("`\\{\"(\\w+)\": (?:\"([^\"]*)\"|[^`]*)\\}`")
)

func readmeRoutes(t testing.TB) []readmeRoute {
	t.Helper()
	var out []readmeRoute
	for _, line := range strings.Split(readmeText(t), "\n") {
		m := routeRowRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		r := readmeRoute{method: m[1], path: m[2], status: 200}
		pat := regexp.QuoteMeta(m[2])
		pat = regexp.MustCompile(`\\\{\w+\\\}`).ReplaceAllString(pat, `[^/]+`)
		r.re = regexp.MustCompile("^" + pat + "$")
		if s := status2xx.FindString(m[3]); s != "" {
			fmt.Sscan(s, &r.status)
		}
		if j := jsonShape.FindStringSubmatch(m[3]); j != nil {
			r.key, r.value = j[1], j[2]
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		t.Fatal("README.md has no API table (| `METHOD /path` | ... |)")
	}
	return out
}

// curlRequest is what a curl example sends.
type curlRequest struct {
	method, url, body string
	headers           []string
}

func parseCurl(words []string) (curlRequest, error) {
	r := curlRequest{}
	for i := 1; i < len(words); i++ {
		w := words[i]
		next := func() (string, error) {
			if i+1 >= len(words) {
				return "", fmt.Errorf("%s without a value", w)
			}
			i++
			return words[i], nil
		}
		var err error
		switch {
		case w == "-X" || w == "--request":
			r.method, err = next()
		case w == "-H" || w == "--header":
			var h string
			h, err = next()
			r.headers = append(r.headers, h)
		case w == "-d" || w == "--data" || w == "--data-raw":
			r.body, err = next()
		case w == "-s" || w == "--silent" || w == "-f" || w == "--fail":
		case strings.HasPrefix(w, "-"):
			return r, fmt.Errorf("curl option %s: teach parseCurl what it does", w)
		default:
			r.url = w
		}
		if err != nil {
			return r, err
		}
	}
	if r.method == "" {
		r.method = "GET"
		if r.body != "" {
			r.method = "POST"
		}
	}
	if r.url == "" {
		return r, fmt.Errorf("no URL")
	}
	return r, nil
}

func (r curlRequest) route(routes []readmeRoute) (*readmeRoute, error) {
	u, err := url.Parse(r.url)
	if err != nil {
		return nil, err
	}
	for i := range routes {
		if routes[i].method == r.method && routes[i].re.MatchString(u.Path) {
			return &routes[i], nil
		}
	}
	return nil, fmt.Errorf("%s %s is not a route of the API table", r.method, u.Path)
}

// readmeServe is the README's `shirath serve` command, or nil.
func readmeServe(t testing.TB) *shellCommand {
	for _, b := range readmeBlocks(t) {
		if b.lang != "sh" {
			continue
		}
		for _, c := range shellCommands(t, b) {
			if len(c.words) > 1 && c.words[0] == "shirath" && c.words[1] == "serve" {
				return &c
			}
		}
	}
	return nil
}

// serveListen is the --listen address of the README's `shirath serve`.
func serveListen(t testing.TB) string {
	if c := readmeServe(t); c != nil {
		for i, w := range c.words {
			if w == "--listen" && i+1 < len(c.words) {
				return c.words[i+1]
			}
		}
	}
	return ""
}

// TestREADMECommands checks every command of the README's ```sh blocks.
func TestREADMECommands(t *testing.T) {
	flags, envs := cliFlags(t)
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([\w-]+):`).FindAllStringSubmatch(string(makefile), -1) {
		targets[m[1]] = true
	}
	routes := readmeRoutes(t)
	design := designHash(t)
	listen := serveListen(t)
	if listen == "" {
		t.Error("README.md shows no `shirath serve --listen ADDR`")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var specFile []byte // the first spec, the file of `shirath mv create -f`
	if yb := readmeSpecs(t); len(yb) > 0 {
		specFile = []byte(yb[0].text)
	}
	blocks := readmeBlocks(t)
	// Files and directories that flags require to exist are made in a
	// directory of their own.
	t.Chdir(t.TempDir())
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SHIRATH_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}

	counts := map[string]int{}
	for _, b := range blocks {
		if b.lang != "sh" {
			continue
		}
		for _, c := range shellCommands(t, b) {
			where := fmt.Sprintf("README.md:%d", c.line)
			for _, v := range regexp.MustCompile(`\bSHIRATH_[A-Z_]+`).FindAllString(c.text, -1) {
				if !envs[v] {
					t.Errorf("%s: %s is not an environment variable of any flag", where, v)
				}
			}
			if len(c.words) == 0 {
				continue
			}
			name := c.words[0]
			if k, _, ok := strings.Cut(name, "="); ok && regexp.MustCompile(`^[A-Za-z_]\w*$`).MatchString(k) {
				name = "assignment" // A="Authorization: ..."; its variables are checked above
			}
			counts[name]++
			switch name {
			case "shirath":
				checkCLI(t, where, c.words[1:], flags, specFile)
			case "make":
				for _, target := range c.words[1:] {
					if !targets[target] {
						t.Errorf("%s: make %s: no such target in the Makefile", where, target)
					}
				}
			case "go":
				for _, w := range c.words[1:] {
					if strings.HasPrefix(w, "./") {
						if fi, err := os.Stat(filepath.Join(root, strings.TrimSuffix(w, "..."))); err != nil || !fi.IsDir() {
							t.Errorf("%s: go %s: no package directory %s", where, c.words[1], w)
						}
					}
				}
			case "export", "assignment":
			case "curl":
				r, err := parseCurl(c.words)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				if _, err := r.route(routes); err != nil {
					t.Errorf("%s: %v", where, err)
				}
				if u, err := url.Parse(r.url); err != nil || u.Host != listen {
					t.Errorf("%s: curl calls %s, while the README's serve listens on %s", where, r.url, listen)
				}
				if r.body != "" {
					s, err := specs.ParseJSON([]byte(r.body))
					switch {
					case err != nil:
						t.Errorf("%s: the body is not a valid spec:\n%v", where, err)
					case specs.Hash(s) != design:
						t.Errorf("%s: the body is not the design's example (examples/products_by_category.yaml)", where)
					}
				}
			default:
				t.Errorf("%s: %q: no check knows this command; teach TestREADMECommands", where, c.words[0])
			}
		}
	}
	// The README has had each of these since the daemon: a parser that
	// finds none is broken.
	for _, name := range []string{"shirath", "make", "curl", "export"} {
		if counts[name] == 0 {
			t.Errorf("found no %s command in the README's sh blocks (found %v)", name, counts)
		}
	}
}

// checkCLI parses one `shirath` command with kong against the real CLI,
// without running it. Flags that name an existing file or directory get
// one, in the current directory; `mv create` must also make a valid spec.
func checkCLI(t *testing.T, where string, args []string, flags map[string]*kong.Flag, specFile []byte) {
	t.Helper()
	args = terraformFlags(args)
	for i, a := range args {
		name, value, eq := strings.Cut(a, "=")
		f := flags[name]
		if f == nil || f.Tag == nil || (f.Tag.Type != "existingfile" && f.Tag.Type != "existingdir") {
			continue
		}
		if !eq {
			if i+1 >= len(args) {
				continue
			}
			value = args[i+1]
		}
		var err error
		switch {
		case f.Tag.Type == "existingdir":
			err = os.MkdirAll(value, 0o755)
		case strings.HasSuffix(value, ".yaml") || strings.HasSuffix(value, ".yml"):
			err = os.WriteFile(value, specFile, 0o644)
		default:
			err = os.WriteFile(value, []byte("token\n"), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cli, p := newCLIParser(t)
	var kctx *kong.Context
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("kong exited: %v", r)
			}
		}()
		kctx, err = p.Parse(args)
		return err
	}()
	if err != nil {
		t.Errorf("%s: shirath %s: %v", where, strings.Join(args, " "), err)
		return
	}
	if kctx.Command() == "mv create" {
		docs, err := cli.MV.Create.documents()
		if err != nil {
			t.Errorf("%s: shirath %s: %v", where, strings.Join(args, " "), err)
		}
		for _, d := range docs {
			if _, err := specs.ParseJSON(d); err != nil {
				t.Errorf("%s: shirath %s makes an invalid spec:\n%v", where, strings.Join(args, " "), err)
			}
		}
	}
}

// TestREADMEInlineCommands checks the `shirath ...` commands quoted in the
// README's prose: each subcommand and flag exists. Arguments may be left
// out there ("`shirath mv drop`" names the command).
func TestREADMEInlineCommands(t *testing.T) {
	_, p := newCLIParser(t)
	n := 0
	for i, line := range strings.Split(readmeText(t), "\n") {
		for _, m := range regexp.MustCompile("`shirath ([^`]*)`").FindAllStringSubmatch(line, -1) {
			n++
			words, _, _ := shellWords(m[1])
			if err := checkCommandWords(p.Model.Node, terraformFlags(words)); err != nil {
				t.Errorf("README.md:%d: `shirath %s`: %v", i+1, m[1], err)
			}
		}
	}
	if n == 0 {
		t.Error("no `shirath ...` in the README's prose")
	}
}

// goTestFlags are flags of `go test` that the README quotes (Tests,
// Benchmarks); every other quoted flag must be shirath's.
var goTestFlags = map[string]bool{"-count": true, "-tags": true, "-run": true, "-bench": true, "-benchtime": true, "-race": true, "-p": true, "-timeout": true}

// TestREADMEInlineFlags checks the flags quoted in the README's prose
// ("`--scan-interval`", "`-detailed-exitcode`", "`--format json`"): each is
// a flag of some shirath command, and a value shown is one the flag takes
// when it takes a fixed set.
func TestREADMEInlineFlags(t *testing.T) {
	flags, _ := cliFlags(t)
	n := 0
	for i, line := range strings.Split(readmeText(t), "\n") {
		for _, m := range regexp.MustCompile("`(--?[a-z][a-z-]*)(?: ([^`]*))?`").FindAllStringSubmatch(line, -1) {
			if goTestFlags[m[1]] {
				continue
			}
			n++
			name := terraformFlags([]string{m[1]})[0]
			f := flags[name]
			switch {
			case f == nil:
				t.Errorf("README.md:%d: `%s` is not a flag of any shirath command", i+1, m[1])
			case m[2] != "" && f.Enum != "" && !slices.Contains(strings.Split(f.Enum, ","), m[2]):
				t.Errorf("README.md:%d: `%s %s`: %s takes one of %s", i+1, m[1], m[2], name, f.Enum)
			}
		}
	}
	if n == 0 {
		t.Error("no flag quoted in the README's prose")
	}
}

// checkCommandWords walks the command tree along words: a word is a flag
// of the selected command or of a parent (with its value, unless it is a
// boolean), a subcommand, or an argument of a command that takes some.
func checkCommandWords(root *kong.Node, words []string) error {
	node := root
	flag := func(name string) *kong.Flag {
		for n := node; n != nil; n = n.Parent {
			for _, f := range n.Flags {
				if name == "--"+f.Name || (f.Short != 0 && name == "-"+string(f.Short)) {
					return f
				}
			}
		}
		return nil
	}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if strings.HasPrefix(w, "-") {
			name, _, eq := strings.Cut(w, "=")
			f := flag(name)
			if f == nil {
				return fmt.Errorf("%s is not a flag of %q", name, node.FullPath())
			}
			if !eq && !f.IsBool() && !f.IsCounter() {
				i++ // its value
			}
			continue
		}
		var child *kong.Node
		for _, c := range node.Children {
			if c.Type == kong.CommandNode && (c.Name == w || slices.Contains(c.Aliases, w)) {
				child = c
			}
		}
		switch {
		case child != nil:
			node = child
		case len(node.Positional) == 0:
			return fmt.Errorf("%q is not a command of %q", w, node.FullPath())
		}
	}
	return nil
}

// decodeJSONObject decodes a JSON object answer.
func decodeJSONObject(body []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	err := json.Unmarshal(body, &m)
	return m, err
}
