//go:build integration

package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

// The workflow of examples/ci run by TestCIWorkflow: its run: scripts as
// they are, with bash as GitHub runs them, the shirath binary built for the
// tests, the local stack as the repository's secrets, and a small local
// HTTP server in place of GitHub's REST API.

// ciWorkflow is the part of a GitHub Actions workflow that the test reads.
type ciWorkflow struct {
	Env      map[string]string `yaml:"env"`
	Defaults struct {
		Run struct {
			Shell string `yaml:"shell"`
		} `yaml:"run"`
	} `yaml:"defaults"`
	Jobs map[string]struct {
		Env   map[string]string `yaml:"env"`
		Steps []ciStep          `yaml:"steps"`
	} `yaml:"jobs"`
}

type ciStep struct {
	Name string            `yaml:"name"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	If   string            `yaml:"if"`
	Env  map[string]string `yaml:"env"`
	With map[string]any    `yaml:"with"`
}

func (s ciStep) label() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Uses
}

// fakeGitHub serves the few REST routes the workflow calls, on 127.0.0.1,
// and keeps what they change.
type fakeGitHub struct {
	*httptest.Server
	token string

	mu        sync.Mutex
	nextID    int64
	comments  []ghComment
	artifacts []ghArtifact
	requests  []string // "METHOD path?query", in order
}

type ghComment struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
	User struct {
		Login string `json:"login"`
	} `json:"user"`
}

type ghArtifact struct {
	ID      int64
	Name    string
	HeadSHA string
	Created time.Time
	Zip     []byte
}

func newFakeGitHub(t *testing.T, token string) *fakeGitHub {
	g := &fakeGitHub{token: token, nextID: 1000}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /repos/acme/analytics/issues/7/comments", func(w http.ResponseWriter, r *http.Request) {
		per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if per <= 0 {
			per = 30
		}
		page = max(page, 1)
		g.mu.Lock()
		defer g.mu.Unlock()
		out := []ghComment{}
		for i := (page - 1) * per; i < len(g.comments) && i < page*per; i++ {
			out = append(out, g.comments[i])
		}
		writeJSONBody(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /repos/acme/analytics/issues/7/comments", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Body string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Body == "" {
			http.Error(w, "bad body", http.StatusUnprocessableEntity)
			return
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		g.nextID++
		c := ghComment{ID: g.nextID, Body: in.Body}
		c.User.Login = "github-actions[bot]"
		g.comments = append(g.comments, c)
		writeJSONBody(w, http.StatusCreated, c)
	})
	mux.HandleFunc("PATCH /repos/acme/analytics/issues/comments/{id}", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Body string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Body == "" {
			http.Error(w, "bad body", http.StatusUnprocessableEntity)
			return
		}
		id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
		g.mu.Lock()
		defer g.mu.Unlock()
		for i := range g.comments {
			if g.comments[i].ID == id {
				g.comments[i].Body = in.Body
				writeJSONBody(w, http.StatusOK, g.comments[i])
				return
			}
		}
		http.NotFound(w, r)
	})
	mux.HandleFunc("GET /repos/acme/analytics/actions/artifacts", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		g.mu.Lock()
		defer g.mu.Unlock()
		type run struct {
			ID      int64  `json:"id"`
			HeadSHA string `json:"head_sha"`
		}
		type artifact struct {
			ID          int64  `json:"id"`
			Name        string `json:"name"`
			Expired     bool   `json:"expired"`
			CreatedAt   string `json:"created_at"`
			WorkflowRun run    `json:"workflow_run"`
		}
		out := []artifact{}
		for i := len(g.artifacts) - 1; i >= 0; i-- { // newest first, as GitHub lists them
			a := g.artifacts[i]
			if name == "" || a.Name == name {
				out = append(out, artifact{ID: a.ID, Name: a.Name, CreatedAt: a.Created.UTC().Format(time.RFC3339), WorkflowRun: run{ID: a.ID + 1, HeadSHA: a.HeadSHA}})
			}
		}
		writeJSONBody(w, http.StatusOK, map[string]any{"total_count": len(out), "artifacts": out})
	})
	// GitHub answers the download with a redirect to short-lived storage.
	mux.HandleFunc("GET /repos/acme/analytics/actions/artifacts/{id}/zip", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/blob/"+r.PathValue("id")+".zip", http.StatusFound)
	})
	mux.HandleFunc("GET /blob/{file}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseInt(strings.TrimSuffix(r.PathValue("file"), ".zip"), 10, 64)
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, a := range g.artifacts {
			if a.ID == id {
				w.Header().Set("Content-Type", "application/zip")
				w.Write(a.Zip)
				return
			}
		}
		http.NotFound(w, r)
	})
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.requests = append(g.requests, r.Method+" "+r.URL.RequestURI())
		g.mu.Unlock()
		if !strings.HasPrefix(r.URL.Path, "/blob/") && r.Header.Get("Authorization") != "Bearer "+g.token {
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(g.Close)
	return g
}

func writeJSONBody(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (g *fakeGitHub) addArtifact(name, sha string, zip []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nextID++
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(len(g.artifacts)) * time.Minute)
	g.artifacts = append(g.artifacts, ghArtifact{ID: g.nextID, Name: name, HeadSHA: sha, Created: created, Zip: zip})
}

// planComments returns the comments that carry the plan marker.
func (g *fakeGitHub) planComments() []ghComment {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []ghComment
	for _, c := range g.comments {
		if strings.HasPrefix(c.Body, "<!-- shirath-plan -->") {
			out = append(out, c)
		}
	}
	return out
}

// takeRequests returns the requests since the last call.
func (g *fakeGitHub) takeRequests() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.requests
	g.requests = nil
	return r
}

// ciRunner runs jobs of the workflow in one workspace, as consecutive runs
// of one repository: what a job leaves in the workspace is only seen by a
// later job through the artifacts, as on GitHub (each run starts clean
// except for the spec files, which the test writes as the checkout would).
type ciRunner struct {
	wf      *ciWorkflow
	ws      string
	gh      *fakeGitHub
	exprs   map[string]string // the ${{ }} expressions of env: and with: values
	runs    int
	summary string // the step summaries of the last job
}

var exprRE = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

func (r *ciRunner) expand(t *testing.T, where, s string) string {
	t.Helper()
	return exprRE.ReplaceAllStringFunc(s, func(m string) string {
		e := exprRE.FindStringSubmatch(m)[1]
		v, ok := r.exprs[e]
		if !ok {
			t.Fatalf("%s: the test does not know the value of ${{ %s }}", where, e)
		}
		return v
	})
}

// runJob runs the steps of job for a pull_request event: a failing step
// ends the job, as on GitHub. It returns the name of the step that failed
// ("" when every step passed) and the output of the job.
func (r *ciRunner) runJob(t *testing.T, job string, event map[string]any, override map[string]string) (string, string) {
	t.Helper()
	j, ok := r.wf.Jobs[job]
	if !ok {
		t.Fatalf("the workflow has no job %q", job)
	}
	r.runs++
	tmp := t.TempDir()
	eventPath := filepath.Join(tmp, "event.json")
	b, err := json.Marshal(event)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(eventPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Each run starts from a fresh checkout: no output of an earlier job.
	if err := os.RemoveAll(filepath.Join(r.ws, "shirath-out")); err != nil {
		t.Fatal(err)
	}
	summary := filepath.Join(tmp, "step_summary.md")
	pr := event["pull_request"].(map[string]any)
	sha := pr["head"].(map[string]any)["sha"].(string)
	base := map[string]string{
		"PATH":                filepath.Dir(shirathBin) + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME":                tmp,
		"CI":                  "true",
		"GITHUB_ACTIONS":      "true",
		"GITHUB_EVENT_NAME":   "pull_request",
		"GITHUB_EVENT_PATH":   eventPath,
		"GITHUB_API_URL":      r.gh.URL,
		"GITHUB_SERVER_URL":   "https://github.com",
		"GITHUB_REPOSITORY":   "acme/analytics",
		"GITHUB_RUN_ID":       strconv.Itoa(9000 + r.runs),
		"GITHUB_SHA":          sha,
		"GITHUB_WORKSPACE":    r.ws,
		"GITHUB_STEP_SUMMARY": summary,
		"RUNNER_TEMP":         tmp,
	}
	var out strings.Builder
	for i, st := range j.Steps {
		where := fmt.Sprintf("job %s, step %d (%s)", job, i+1, st.label())
		if st.If != "" {
			t.Fatalf("%s: the test cannot evaluate if: %s", where, st.If)
		}
		switch {
		case st.Run != "":
			if strings.Contains(st.Run, "${{") {
				t.Fatalf("%s: a run: script uses ${{ }}: pass the value through env: (the test runs scripts as they are)", where)
			}
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for _, m := range []map[string]string{r.wf.Env, j.Env, st.Env} {
				for k, v := range m {
					env[k] = r.expand(t, where, v)
				}
			}
			for k, v := range override {
				env[k] = v
			}
			var list []string
			for k, v := range env {
				list = append(list, k+"="+v)
			}
			script := filepath.Join(tmp, fmt.Sprintf("step%d.sh", i+1))
			if err := os.WriteFile(script, []byte(st.Run), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			// What GitHub runs for shell: bash.
			cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-eo", "pipefail", script)
			cmd.Dir, cmd.Env = r.ws, list
			o, err := cmd.CombinedOutput()
			cancel()
			fmt.Fprintf(&out, "== %s\n%s", st.label(), o)
			if err != nil {
				fmt.Fprintf(&out, "== %s failed: %v\n", st.label(), err)
				t.Logf("%s", out.String())
				r.summary = readFile(t, summary)
				return st.label(), out.String()
			}
		case strings.HasPrefix(st.Uses, "actions/checkout@"), strings.HasPrefix(st.Uses, "actions/setup-go@"):
			// The test wrote the spec files; the binary is on PATH.
		case strings.HasPrefix(st.Uses, "actions/upload-artifact@"):
			name := r.expand(t, where, fmt.Sprint(st.With["name"]))
			r.gh.addArtifact(name, sha, zipDir(t, filepath.Join(r.ws, fmt.Sprint(st.With["path"]))))
			fmt.Fprintf(&out, "== uploaded artifact %s\n", name)
		default:
			t.Fatalf("%s: the test does not know how to run %q", where, st.Uses)
		}
	}
	t.Logf("%s", out.String())
	r.summary = readFile(t, summary)
	return "", out.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// zipDir zips the files under dir, named relative to it: what
// actions/upload-artifact makes of a directory.
func zipDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		w, err := zw.Create(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatalf("zip %s: %v", dir, err)
	}
	return buf.Bytes()
}

func prEvent(action, sha string, merged bool) map[string]any {
	return map[string]any{
		"action": action,
		"number": 7,
		"pull_request": map[string]any{
			"number": 7,
			"merged": merged,
			"head":   map[string]any{"sha": sha},
		},
	}
}

func specYAML(name, db, engine string) string {
	return fmt.Sprintf("name: %s\ndatabase: %s\nsource_table: products\nengine: %q\norder_by: [category]\ncolumns:\n  - name: category\n    type: String\n  - name: cnt\n    type: UInt64\n  - name: total_price\n    type: Decimal(18,2)\nselect_query: %q\n", name, db, engine, mvQuery)
}

// TestCIWorkflow runs examples/ci/shirath.yml through a pull request's life
// on each single node: a broken spec (the comment shows the error, the job
// fails), the fixed spec (the same comment now shows the plan; nothing is
// applied), a plan made stale by another apply before the merge (the merge
// job refuses it and applies nothing), a new push and its merge (the plan
// of the merged commit is applied: the target holds the exact aggregate).
func TestCIWorkflow(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "ci", "shirath.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var wf ciWorkflow
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatalf("examples/ci/shirath.yml: %v", err)
	}
	if wf.Defaults.Run.Shell != "bash" {
		t.Fatalf("the workflow's run: steps use shell %q; the test runs them with bash", wf.Defaults.Run.Shell)
	}
	for _, tool := range []string{"bash", "curl", "jq", "unzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the workflow's scripts need %s, as GitHub's runners have it: `make up` installs it", tool)
		}
	}
	specDir := wf.Env["SHIRATH_SPECS"]
	if specDir == "" || strings.ContainsAny(specDir, " $") {
		t.Fatalf("SHIRATH_SPECS = %q: the test writes the specs into one directory", specDir)
	}

	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		servertest.Products(t, conn, db, 50_000)
		pg := env.PostgresDB(t)
		const token = "ghs_test_token"
		gh := newFakeGitHub(t, token)
		human := ghComment{ID: 1, Body: "Looks good, but see the plan."}
		human.User.Login = "reviewer"
		gh.comments = []ghComment{human}

		ws := t.TempDir()
		if err := os.MkdirAll(filepath.Join(ws, specDir), 0o755); err != nil {
			t.Fatal(err)
		}
		writeSpec := func(yaml string) {
			t.Helper()
			if err := os.WriteFile(filepath.Join(ws, specDir, "by_cat.yaml"), []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		r := &ciRunner{wf: &wf, ws: ws, gh: gh, exprs: map[string]string{
			"secrets.SHIRATH_CH_ADDR": s.Addr,
			"secrets.SHIRATH_PG_URL":  pg,
			// Unset secrets are empty strings on GitHub: the defaults must hold.
			"secrets.SHIRATH_CH_USER":          "",
			"secrets.SHIRATH_CH_PASSWORD":      "",
			"github.token":                     token,
			"github.event.pull_request.number": "7",
		}}
		mvObjects := func() []string { return mvTables(t, conn, db, "by_cat") }

		// 1. A broken spec: validate fails, the comment says why, the job fails.
		writeSpec(specYAML("by_cat", db, "NoSuchMergeTree()"))
		failed, out := r.runJob(t, "plan", prEvent("opened", "1111111111111111111111111111111111111111", false), nil)
		if failed != "Result" {
			t.Fatalf("plan job with a broken spec: failed at %q, want the last step (Result)\n%s", failed, out)
		}
		pcs := gh.planComments()
		if len(pcs) != 1 || !strings.Contains(pcs[0].Body, "**shirath validate failed:**") || !strings.Contains(pcs[0].Body, "NoSuchMergeTree") ||
			!strings.Contains(pcs[0].Body, "### shirath plan for 111111111111\n") || !strings.Contains(pcs[0].Body, "Nothing will be applied on merge") {
			t.Fatalf("comment after a failed validate: %+v", pcs)
		}
		commentID := pcs[0].ID
		if reqs := gh.takeRequests(); len(reqs) != 2 || reqs[0] != "GET /repos/acme/analytics/issues/7/comments?per_page=100&page=1" || reqs[1] != "POST /repos/acme/analytics/issues/7/comments" {
			t.Fatalf("GitHub requests: %q", reqs)
		}

		// 2. Fixed, on a tiny comment limit: the comment keeps the summary only.
		writeSpec(specYAML("by_cat", db, "SummingMergeTree()"))
		sha2 := "2222222222222222222222222222222222222222"
		if failed, out := r.runJob(t, "plan", prEvent("synchronize", sha2, false), map[string]string{"SHIRATH_COMMENT_LIMIT": "300"}); failed != "" {
			t.Fatalf("plan job: step %s failed\n%s", failed, out)
		}
		pcs = gh.planComments()
		if len(pcs) != 1 || pcs[0].ID != commentID ||
			!strings.Contains(pcs[0].Body, "\n**Plan:** 1 to create, 0 to change, 0 to destroy.\n\nToo long for a comment: the [run](https://github.com/acme/analytics/actions/runs/") ||
			strings.Contains(pcs[0].Body, "<details>") {
			t.Fatalf("comment over the limit (id %d): %+v", commentID, pcs)
		}
		if reqs := gh.takeRequests(); len(reqs) != 2 || reqs[1] != fmt.Sprintf("PATCH /repos/acme/analytics/issues/comments/%d", commentID) {
			t.Fatalf("GitHub requests: %q", reqs)
		}

		// The same commit planned again with the real limit: the whole plan,
		// in the same comment, beside the reviewer's untouched one.
		if failed, out := r.runJob(t, "plan", prEvent("reopened", sha2, false), nil); failed != "" {
			t.Fatalf("plan job: step %s failed\n%s", failed, out)
		}
		pcs = gh.planComments()
		body := pcs[0].Body
		for _, want := range []string{
			"<!-- shirath-plan -->\n### shirath plan for 222222222222\n\n**Plan:** 1 to create, 0 to change, 0 to destroy.\n",
			"<summary><code>+</code> <b>" + db + ".by_cat</b> will be created</summary>",
			"```diff\n  -- create_target\n+ CREATE TABLE IF NOT EXISTS `" + db + "`.`by_cat_data`",
			"Merging applies exactly this plan",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("the plan comment lacks %q:\n%s", want, body)
			}
		}
		if len(pcs) != 1 || pcs[0].ID != commentID || len(gh.comments) != 2 || gh.comments[0].Body != human.Body {
			t.Fatalf("comments: %+v", gh.comments)
		}
		if !strings.HasPrefix(r.summary, "**Plan:** 1 to create") {
			t.Errorf("step summary: %q", r.summary)
		}
		if left := mvObjects(); len(left) > 0 {
			t.Fatalf("a plan created %v", left)
		}
		gh.takeRequests()

		// 3. Another MV is applied before the merge: the reviewed plan is
		// stale, and the merge job applies nothing.
		other := filepath.Join(t.TempDir(), "other.yaml")
		if err := os.WriteFile(other, []byte(specYAML("other", db, "SummingMergeTree()")), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, code := cli(t, "apply", "--auto-approve", "--clickhouse", s.Addr, "--postgres", pg, other); code != 0 {
			t.Fatalf("apply of another MV: %d\n%s", code, out)
		}
		failed, out = r.runJob(t, "apply", prEvent("closed", sha2, true), nil)
		if failed != "Apply" || !strings.Contains(out, "saved plan is stale") {
			t.Fatalf("merge of a stale plan: failed at %q, want Apply refusing a stale plan\n%s", failed, out)
		}
		if left := mvObjects(); len(left) > 0 {
			t.Fatalf("a stale plan created %v", left)
		}

		// 4. A new push is planned again; another commit's artifact, newer,
		// must not be taken for it. The merge applies the plan of its commit.
		sha3 := "3333333333333333333333333333333333333333"
		if failed, out := r.runJob(t, "plan", prEvent("synchronize", sha3, false), nil); failed != "" {
			t.Fatalf("plan job: step %s failed\n%s", failed, out)
		}
		if pcs := gh.planComments(); len(pcs) != 1 || !strings.Contains(pcs[0].Body, "### shirath plan for 333333333333\n") {
			t.Fatalf("comments after a new push: %+v", pcs)
		}
		gh.addArtifact("shirath-plan-7", "4444444444444444444444444444444444444444", gh.artifacts[len(gh.artifacts)-2].Zip)
		failed, out = r.runJob(t, "apply", prEvent("closed", sha3, true), nil)
		if failed != "" || !strings.Contains(out, "Apply complete! Resources: 1 created, 0 changed, 0 destroyed.") {
			t.Fatalf("merge: step %q failed\n%s", failed, out)
		}
		servertest.CheckExact(t, conn, db, "by_cat_data")
		if reqs := gh.takeRequests(); len(reqs) < 3 || reqs[len(reqs)-3] != "GET /repos/acme/analytics/actions/artifacts?name=shirath-plan-7&per_page=100" {
			t.Errorf("GitHub requests of the merge job: %q", reqs)
		}
	})
}
