//go:build integration

package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

// artifactsEnv names a directory that keeps the status page's screenshots;
// without it they go to t.ArtifactDir(), kept by go test -artifacts.
const artifactsEnv = "SHIRATH_TEST_ARTIFACTS"

// TestStatusPage drives the page at / in headless chromium against a real
// daemon with a token: the page asks for the token (and refuses a wrong
// one), then shows a backfill whose progress bars render and move, an MV
// whose source does not exist with its error and reconcile state, and the
// completed MV with its rows and cutoff; clicking an MV shows what
// GET /api/mv/{name} returns. A screenshot taken while the backfill runs is
// kept as an artifact. Any JavaScript exception or Content-Security-Policy
// violation fails the test.
func TestStatusPage(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		// 60 batches of 10,000 rows: a backfill of several seconds.
		const n = 600_000
		servertest.Products(t, conn, db, n)
		const token = "page-token"
		d := servertest.Start(t, bin, servertest.Env{CHAddr: s.Addr, PGURL: env.PostgresDB(t), Token: token})

		// The shell needs no token and holds no data.
		r := do(t, "GET", d.URL+"/", "", "")
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET /: %d %q", r.status, r.header.Get("Content-Type"))
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'sha256-") {
			t.Fatalf("GET /: Content-Security-Policy %q", csp)
		}

		b := newBrowser(t)
		b.do(t, chromedp.Navigate(d.URL+"/?interval=250"))
		b.waitText(t, "#login-why", "needs its API token")
		b.do(t, chromedp.SendKeys(chromedp.ID("token"), "wrong-token"), chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)))
		b.waitText(t, "#login-why", "refused this token")
		b.do(t, chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)))
		b.waitText(t, "#mvs", "No MVs yet")

		// Two MVs, made after the page is open: it must find them by itself.
		slow, missing := db+".slow", db+".no_source"
		spec := strings.Replace(smallBatches(db, "slow"), `"max_batch_rows": 20000`, `"max_batch_rows": 10000`, 1)
		spec = strings.Replace(spec, `"initial_batch_rows": 20000`, `"initial_batch_rows": 10000`, 1)
		if r := do(t, "POST", d.URL+"/api/mv", token, spec); r.status != http.StatusCreated {
			t.Fatalf("POST slow: %d %s", r.status, r.body)
		}
		blocked := strings.Replace(strings.Replace(designBody(db), `"products"`, `"products_missing"`, 1), "products_by_category", "no_source", 1)
		if r := do(t, "POST", d.URL+"/api/mv", token, blocked); r.status != http.StatusCreated {
			t.Fatalf("POST no_source: %d %s", r.status, r.body)
		}
		if r := do(t, "GET", d.URL+"/", "", ""); r.status != http.StatusOK || bytes.Contains(r.body, []byte(db)) {
			t.Fatalf("GET / without the token: %d, and the page names the MVs' database: %v", r.status, bytes.Contains(r.body, []byte(db)))
		}

		// The bars render mid-backfill, then move.
		first := b.waitCard(t, slow, 3*time.Minute, "a backfill in progress with its bars drawn", func(c *pageCard) bool {
			if c.Status == "completed" {
				t.Fatalf("the backfill completed and the page never showed it in progress: %s", c)
			}
			return c.Status == "backfilling" && len(c.Bars) >= 2 && c.Bars[0].Value > 0 && c.Bars[0].Value < 100 && c.Bars[0].Width > 0
		})
		t.Logf("first reading: %s", first)
		second := b.waitCard(t, slow, 3*time.Minute, "the bars grown since the first reading", func(c *pageCard) bool {
			if len(c.Bars) != len(first.Bars) {
				t.Fatalf("the number of bars changed: %s, then %s", first, c)
			}
			for i := range c.Bars {
				if c.Bars[i].Value < first.Bars[i].Value || c.Bars[i].Width < first.Bars[i].Width {
					t.Fatalf("bar %d went back: %s, then %s", i, first, c)
				}
			}
			return c.Bars[0].Value > first.Bars[0].Value && c.Bars[0].Width > first.Bars[0].Width &&
				c.Bars[1].Value > first.Bars[1].Value && c.Bars[1].Width > first.Bars[1].Width
		})
		t.Logf("second reading: %s", second)
		if first.Cluster == "" || first.Rows == "" || first.Reconcile == "" || first.ReconcileState == "" {
			t.Fatalf("a fact is missing from the card: %s", first)
		}

		// The MV without a source shows its error and its terminal state.
		bad := b.waitCard(t, missing, time.Minute, "the error of an MV without a source", func(c *pageCard) bool {
			return strings.Contains(c.Error, "does not exist") && c.ReconcileState == "blocked"
		})
		t.Logf("blocked: %s", bad)
		b.screenshot(t, "status-page.png")

		// Completed: full bars, the fence and every row.
		done := b.waitCard(t, slow, 5*time.Minute, "the completed backfill", func(c *pageCard) bool { return c.Status == "completed" })
		nf := fmtThousands(n)
		if done.Cutoff != nf || done.Rows != nf+" / "+nf || done.Bars[0].Value != 100 || done.Bars[0].Width < done.Bars[0].Track-1 || done.Error != "" {
			t.Fatalf("completed card: %s; want cutoff and rows %s, a full bar, no error", done, nf)
		}

		// The detail of one MV comes from GET /api/mv/{name}.
		b.do(t, chromedp.Click(chromedp.CSS(`[data-mv="`+slow+`"] h2 a`)))
		b.waitText(t, "#detail pre", fmt.Sprintf(`"cutoff_id": %d`, n))
		if u := b.eval(t, `location.hash`); u != `"#`+slow+`"` {
			t.Fatalf("the link leads to %s", u)
		}
		b.checkClean(t)
	})
}

// browser is one headless chromium with one tab, with what its page threw
// or logged as an error.
type browser struct {
	ctx     context.Context
	out     *bytes.Buffer
	started bool

	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (%v): run make up, which installs the Debian package chromium", err)
	}
	b := &browser{out: &bytes.Buffer{}}
	// The background-networking flags keep chromium from dialling Google's
	// services, which this network refuses, and which the page does not need.
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
		chromedp.CombinedOutput(&lockedWriter{w: b.out, mu: &b.mu}),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 10*time.Minute)
	t.Cleanup(func() {
		if t.Failed() && b.started {
			if path, err := b.saveScreenshot(t, "failed.png"); err != nil {
				t.Logf("no screenshot of the failure: %v", err)
			} else {
				t.Logf("the page when the test failed: %s", path)
			}
		}
		if err := chromedp.Cancel(ctx); err != nil {
			t.Logf("close chromium: %v", err)
		}
		cancelTimeout()
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output, without its complaints about D-Bus:\n%s", b.output(8000))
		}
	})
	b.ctx = ctx
	// Starts chromium; then every exception and error the page logs is kept.
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	b.started = true
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	entries := chromedp.Events(ctx, cdplog.EntryAdded)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			b.problem("exception: " + ev.ExceptionDetails.Text + " " + describeException(ev.ExceptionDetails))
		}
	}()
	go func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			e := ev.Entry
			// The 401 answers to the page's reads before it has the
			// token are expected; chromium logs each failed load.
			if e.Level == cdplog.EntryLevelError && !strings.Contains(e.Text, "status of 401") {
				b.problem(fmt.Sprintf("%s %s: %s %s", e.Source, e.Level, e.Text, e.URL))
			}
		}
	}()
	return b
}

func describeException(d *runtime.ExceptionDetails) string {
	s := fmt.Sprintf("at %s:%d:%d", d.URL, d.LineNumber+1, d.ColumnNumber+1)
	if d.Exception != nil && d.Exception.Description != "" {
		s += ": " + d.Exception.Description
	}
	return s
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// output is the last n bytes of what chromium printed, without the lines
// about the D-Bus that containers do not have.
func (b *browser) output(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var keep strings.Builder
	for _, line := range strings.SplitAfter(b.out.String(), "\n") {
		if !strings.Contains(line, "dbus/") {
			keep.WriteString(line)
		}
	}
	s := keep.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

func (b *browser) problem(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, s)
}

// checkClean fails the test when the page threw or logged an error (a
// Content-Security-Policy violation is logged as one).
func (b *browser) checkClean(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 {
		t.Fatalf("the page reported problems:\n%s", strings.Join(b.problems, "\n"))
	}
}

func (b *browser) do(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("chromium: %v", err)
	}
}

// eval returns the JSON of a JavaScript expression's value.
func (b *browser) eval(t *testing.T, js string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return string(raw)
}

// waitText waits until the text of the element sel contains want.
func (b *browser) waitText(t *testing.T, sel, want string) {
	t.Helper()
	q, _ := json.Marshal(sel)
	js := fmt.Sprintf(`(document.querySelector(%s) || {}).textContent || ""`, q)
	deadline := time.Now().Add(time.Minute)
	var got string
	for time.Now().Before(deadline) {
		b.checkClean(t)
		if err := json.Unmarshal([]byte(b.eval(t, js)), &got); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(got, want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.checkClean(t)
	t.Fatalf("%s: %q does not contain %q after a minute", sel, got, want)
}

// pageCard is what the page shows of one MV.
type pageCard struct {
	Status, Cluster, Rows, Cutoff, Reconcile, ReconcileState, Error string
	Bars                                                            []pageBar
}

// pageBar is one progress bar: the value it announces and the widths of its
// fill and its track as drawn, in CSS pixels.
type pageBar struct {
	Label        string
	Value        float64
	Width, Track float64
}

func (c *pageCard) String() string {
	var bars []string
	for _, b := range c.Bars {
		bars = append(bars, fmt.Sprintf("[%s: %.1f%%, %.0f/%.0fpx]", b.Label, b.Value, b.Width, b.Track))
	}
	return fmt.Sprintf("status %q, cluster %q, rows %q, cutoff %q, reconcile %q (%q), error %q, bars %s",
		c.Status, c.Cluster, c.Rows, c.Cutoff, c.ReconcileState, c.Reconcile, c.Error, strings.Join(bars, " "))
}

const readCard = `((key) => {
	const c = [...document.querySelectorAll("article.mv")].find((e) => e.dataset.mv === key);
	if (!c) return null;
	const f = (name) => { const e = c.querySelector('[data-field="' + name + '"]'); return e ? e.textContent : ""; };
	return {
		Status: f("status"), Cluster: f("cluster"), Rows: f("rows"), Cutoff: f("cutoff"),
		Reconcile: f("reconcile"), ReconcileState: f("reconcile-state"), Error: f("error"),
		Bars: [...c.querySelectorAll('[role="progressbar"]')].map((b) => ({
			Label: b.getAttribute("aria-label"),
			Value: Number(b.getAttribute("aria-valuenow")),
			Width: b.firstElementChild.getBoundingClientRect().width,
			Track: b.getBoundingClientRect().width,
		})),
	};
})(%s)`

// waitCard reads the MV's card until ok accepts it.
func (b *browser) waitCard(t *testing.T, key string, timeout time.Duration, what string, ok func(*pageCard) bool) *pageCard {
	t.Helper()
	k, _ := json.Marshal(key)
	js := fmt.Sprintf(readCard, k)
	deadline := time.Now().Add(timeout)
	var last *pageCard
	for time.Now().Before(deadline) {
		b.checkClean(t)
		var c *pageCard
		if err := json.Unmarshal([]byte(b.eval(t, js)), &c); err != nil {
			t.Fatal(err)
		}
		if c != nil {
			last = c
			if ok(c) {
				return c
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.checkClean(t)
	t.Fatalf("%s: no %s within %s; last seen: %v", key, what, timeout, last)
	return nil
}

// screenshot writes a PNG of the whole page into the test's artifact
// directory, or into $SHIRATH_TEST_ARTIFACTS.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	path, err := b.saveScreenshot(t, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

func (b *browser) saveScreenshot(t *testing.T, name string) (string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	img, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "", fmt.Errorf("screenshot: %w", err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(img))
	if err != nil || cfg.Width < 800 || cfg.Height < 300 {
		return "", fmt.Errorf("the screenshot is not a page-sized PNG: %v %+v", err, cfg)
	}
	dir := os.Getenv(artifactsEnv)
	if dir == "" {
		dir = t.ArtifactDir()
	} else {
		dir = filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, img, 0o644)
}

// fmtThousands prints n as the page does (en-US grouping).
func fmtThousands(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
