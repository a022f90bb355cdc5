//go:build integration

package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/server"
	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

// TestREADMEAPIExamples runs the README's curl examples with curl, in the
// README's order, against a real daemon, and checks each answer against
// what the README's API table documents for its route: the status (the
// first 2xx of the row, else 200) and the JSON shape the row shows
// ({"job": ...}, {"status": "deleted"}), plus the job fields a trailing
// comment names. The commands run as written, with three changes that
// isolate the test: the address of the README's daemon becomes the test
// daemon's, and the MV lives in the test's database (its name in URLs
// becomes database.name, which the README documents, and the body gets a
// "database" field). Between examples the test waits for the MV to be
// complete, as a reader would before the next command.
func TestREADMEAPIExamples(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	routes := readmeRoutes(t)
	listen := serveListen(t)
	formatVersion := regexp.MustCompile(`format_version "([^"]+)"`).FindStringSubmatch(readmeText(t))
	if formatVersion == nil {
		t.Fatal(`README.md does not say which format_version plan --json prints`)
	}
	// What the README's `shirath serve` says it prints, up to its "...".
	serve := readmeServe(t)
	if serve == nil {
		t.Fatal("README.md has no `shirath serve` example")
	}
	printed := ""
	if m := regexp.MustCompile(`prints "([^"]*?)(\.\.\.)?"`).FindStringSubmatch(serve.comment); m != nil {
		printed = m[1]
	} else {
		t.Error(`README.md's shirath serve no longer says what it prints (# prints "...")`)
	}
	// Each curl runs after the shell assignments the README makes before
	// it (A="Authorization: Bearer $SHIRATH_API_TOKEN"), as a reader who
	// follows it from the top would.
	type curlExample struct {
		shellCommand
		prelude string
	}
	var assignments []string
	var curls []curlExample
	for _, b := range readmeBlocks(t) {
		if b.lang != "sh" {
			continue
		}
		for _, c := range shellCommands(t, b) {
			switch {
			case len(c.words) == 0:
			case c.words[0] == "curl":
				curls = append(curls, curlExample{c, strings.Join(assignments, "\n")})
			case regexp.MustCompile(`^[A-Za-z_]\w*=`).MatchString(c.words[0]):
				assignments = append(assignments, c.text)
			}
		}
	}
	if len(curls) == 0 {
		t.Fatal("README.md has no curl example")
	}
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		servertest.Products(t, conn, db, 50_000)
		tok := make([]byte, 32)
		rand.Read(tok)
		token := hex.EncodeToString(tok)
		d := servertest.Start(t, shirathBin, servertest.Env{CHAddr: s.Addr, PGURL: env.PostgresDB(t), Token: token})
		c := d.Client(token)
		if printed != "" && !strings.Contains(d.Stdout(), printed) {
			t.Errorf("the README says serve prints %q, it printed %q", printed, d.Stdout())
		}
		var mvName string // of the spec the examples create
		var lastID int64
		for _, ex := range curls {
			where := "README.md:" + strconv.Itoa(ex.line)
			req, err := parseCurl(ex.words)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			rt, err := req.route(routes)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			cmd := strings.ReplaceAll(ex.text, "http://"+listen, d.URL)
			if req.body != "" {
				var spec struct{ Name string }
				if err := json.Unmarshal([]byte(req.body), &spec); err != nil || spec.Name == "" {
					t.Fatalf("%s: body without a name: %v", where, err)
				}
				mvName = spec.Name
				cmd = strings.Replace(cmd, `"name": "`+mvName+`"`, `"name": "`+mvName+`", "database": "`+db+`"`, 1)
			}
			if mvName != "" {
				cmd = strings.ReplaceAll(cmd, "/api/mv/"+mvName, "/api/mv/"+db+"."+mvName)
			}
			script := ex.prelude + "\n" + cmd + " -w '\\nstatus=%{http_code}'\n"
			sh := exec.Command("bash", "-c", script)
			sh.Env = append(os.Environ(), "SHIRATH_API_TOKEN="+token)
			out, err := sh.Output()
			if err != nil {
				t.Fatalf("%s: %v\n%s\n%s", where, err, script, out)
			}
			body, status, _ := strings.Cut(string(out), "\nstatus=")
			t.Logf("%s: %s %s -> %s", where, req.method, req.url, status)
			if status != strconv.Itoa(rt.status) {
				t.Fatalf("%s: %s %s answered %s, the README documents %d:\n%s", where, req.method, rt.path, status, rt.status, body)
			}
			checkDocumentedAnswer(t, where, rt, ex.comment, []byte(body), formatVersion[1])

			if req.method == "POST" && mvName != "" && !strings.HasSuffix(rt.path, "/verify") {
				// A created or rebuilt MV: wait until it is complete, on a
				// new job when the last one was rebuilt. (A verify only
				// reads it.)
				mv := servertest.WaitFor(t, c, db+"."+mvName, 5*time.Minute, func(mv *server.MV) bool {
					return mv.Status == "completed" && mv.ID != nil && *mv.ID != lastID
				})
				lastID = *mv.ID
			}
		}
	})
}

// checkDocumentedAnswer checks an answer's JSON against its route's row.
func checkDocumentedAnswer(t *testing.T, where string, rt *readmeRoute, comment string, body []byte, formatVersion string) {
	t.Helper()
	obj, err := decodeJSONObject(body)
	if err != nil {
		t.Fatalf("%s: the answer is not a JSON object: %v\n%s", where, err, body)
	}
	if rt.key != "" {
		v, ok := obj[rt.key]
		if !ok {
			t.Fatalf("%s: the README documents {%q: ...}, the answer has no %s:\n%s", where, rt.key, rt.key, body)
		}
		if rt.value != "" {
			if s, _ := strconv.Unquote(string(v)); s != rt.value {
				t.Fatalf("%s: the README documents {%q: %q}, the answer has %s", where, rt.key, rt.value, v)
			}
		}
	}
	if rt.path == "/api/plan" {
		// "exactly as `shirath plan --json` prints it", whose format_version
		// the README gives.
		if v, _ := strconv.Unquote(string(obj["format_version"])); v != formatVersion {
			t.Fatalf("%s: format_version %s, the README says %q:\n%s", where, obj["format_version"], formatVersion, body)
		}
	}
	if comment == "" {
		return
	}
	// A comment naming fields ("# progress_percent, status") names fields of
	// the job.
	job, err := decodeJSONObject(obj["job"])
	for _, f := range strings.Split(comment, ",") {
		f = strings.TrimSpace(f)
		if !regexp.MustCompile(`^[a-z_]+$`).MatchString(f) {
			continue
		}
		if err != nil {
			t.Fatalf("%s: the comment names the job field %s, the answer has no job: %v\n%s", where, f, err, body)
		}
		if _, ok := job[f]; !ok {
			t.Fatalf("%s: the comment names the job field %s, the answer's job has none:\n%s", where, f, body)
		}
	}
}
