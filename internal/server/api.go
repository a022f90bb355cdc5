package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 1 << 20

// opTimeout bounds the work a request does on ClickHouse and PostgreSQL
// (a drop, a plan); it does not end when the client goes away, so that a
// drop is not left half done.
const opTimeout = 5 * time.Minute

// Error is the body of every error response: what went wrong, and the
// details (every validation error, hints).
type Error struct {
	Status  int      `json:"-"`
	Message string   `json:"error"`
	Details []string `json:"details"`
}

func (e *Error) Error() string {
	if len(e.Details) == 0 {
		return e.Message
	}
	return e.Message + ": " + strings.Join(e.Details, "; ")
}

func apiErr(status int, msg string, details ...string) *Error {
	if details == nil {
		details = []string{}
	}
	return &Error{Status: status, Message: msg, Details: details}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(apiErr(status, "encode response: "+err.Error()))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = apiErr(http.StatusInternalServerError, err.Error())
	}
	if e.Details == nil {
		e.Details = []string{}
	}
	writeJSON(w, e.Status, e)
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status >= 500 {
				s.log.Named("api").Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
			}
			writeError(w, err)
		}
	})
}

// Handler is the HTTP API: /api/* (behind the token when one is set),
// /healthz, /readyz and /metrics.
func (s *Server) Handler() http.Handler {
	mux, _ := s.routes()
	return s.logRequests(s.requireToken(jsonFallback(mux)))
}

// routes registers every route on a new mux and returns it with the
// patterns it registered: the OpenAPI test checks the document against
// exactly these, so a route registered here without being documented (or
// the reverse) fails it.
func (s *Server) routes() (*http.ServeMux, []string) {
	mux := &recordingMux{ServeMux: http.NewServeMux()}
	mux.Handle("GET /api/mv", s.handle(s.listMVs))
	mux.Handle("POST /api/mv", s.handle(s.createMV))
	mux.Handle("GET /api/mv/{name}", s.handle(s.getMV))
	mux.Handle("DELETE /api/mv/{name}", s.handle(s.deleteMV))
	mux.Handle("POST /api/mv/{name}/backfill", s.handle(s.backfillMV))
	mux.Handle("POST /api/mv/{name}/verify", s.handle(s.verifyMV))
	mux.Handle("GET /api/plan", s.handle(s.getPlan))
	mux.Handle("GET /healthz", s.handle(s.healthz))
	mux.Handle("GET /readyz", s.handle(s.readyz))
	mux.Handle("GET /metrics", metricsHandler(s.reg))
	mux.Handle("GET /{$}", http.HandlerFunc(s.servePage))
	mux.Handle("GET /api/openapi.json", s.handle(serveOpenAPI))
	return mux.ServeMux, mux.patterns
}

// recordingMux is a ServeMux that keeps the patterns registered on it.
type recordingMux struct {
	*http.ServeMux
	patterns []string
}

func (m *recordingMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *recordingMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// jsonFallback answers what the mux itself would answer in plain text (no
// route: 404; a route without this method: 405 with Allow) as JSON errors.
func jsonFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		cw := &captureWriter{header: http.Header{}}
		mux.ServeHTTP(cw, r)
		if cw.status == 0 {
			cw.status = http.StatusNotFound
		}
		for _, h := range []string{"Allow", "Location"} {
			if v := cw.header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		msg := strings.ToLower(http.StatusText(cw.status))
		var details []string
		switch cw.status {
		case http.StatusNotFound:
			msg = "no such route: " + r.Method + " " + r.URL.Path
		case http.StatusMethodNotAllowed:
			details = []string{"allowed: " + cw.header.Get("Allow")}
		}
		writeError(w, apiErr(cw.status, msg, details...))
	})
}

type captureWriter struct {
	header http.Header
	status int
}

func (c *captureWriter) Header() http.Header         { return c.header }
func (c *captureWriter) Write(b []byte) (int, error) { return len(b), nil }
func (c *captureWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

// requireToken checks the bearer token on every /api route when a token is
// configured. The comparison is of SHA-256 digests in constant time, so that
// neither the token's bytes nor its length leak through timing.
func (s *Server) requireToken(next http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api" && !strings.HasPrefix(r.URL.Path, "/api/") {
			next.ServeHTTP(w, r)
			return
		}
		if !s.validToken(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shirath"`)
			writeError(w, apiErr(http.StatusUnauthorized, "unauthorized", "send the API token as the header Authorization: Bearer <token>"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) validToken(header string) bool {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], s.token[:]) == 1
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Server) logRequests(next http.Handler) http.Handler {
	log := s.log.Named("api")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		level := log.Debug
		if r.Method != http.MethodGet || sw.status >= 400 {
			level = log.Info
		}
		level("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "took", time.Since(start).Round(time.Microsecond).String(), "remote", r.RemoteAddr)
	})
}

// readBody reads a body of at most MaxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, apiErr(http.StatusRequestEntityTooLarge, "request body too large", fmt.Sprintf("the limit is %d bytes", MaxBodyBytes))
	}
	if err != nil {
		return nil, apiErr(http.StatusBadRequest, "read request body: "+err.Error())
	}
	return b, nil
}

// decodeStrict decodes one JSON value into v: unknown fields and trailing
// data are errors. An empty body leaves v as it is.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiErr(http.StatusBadRequest, "malformed JSON body", err.Error())
	}
	if dec.More() {
		return apiErr(http.StatusBadRequest, "malformed JSON body", "data after the JSON value")
	}
	var extra any
	if err := dec.Decode(&extra); err != io.EOF {
		return apiErr(http.StatusBadRequest, "malformed JSON body", "data after the JSON value")
	}
	return nil
}

func (s *Server) keyOf(r *http.Request) (db, name string, err error) {
	db, name, err = ParseKey(r.PathValue("name"))
	if err != nil {
		return "", "", apiErr(http.StatusBadRequest, "invalid MV name", err.Error())
	}
	return db, name, nil
}

func notFound(key string) error {
	return apiErr(http.StatusNotFound, "MV "+key+" not found", "neither a spec nor a job has this name; list them with GET /api/mv")
}

// view renders the MV key from a fresh read of its job and spec.
func (s *Server) view(ctx context.Context, db, name string) (json.RawMessage, error) {
	key := Key(db, name)
	job, err := getJob(ctx, s.store, db, name)
	if err != nil {
		return nil, err
	}
	d, ok, err := s.desiredOne(ctx, db, name)
	if err != nil {
		return nil, err
	}
	var dp *Desired
	if ok {
		dp = &d
	}
	if job == nil && dp == nil {
		return nil, notFound(key)
	}
	return View(job, dp, s.condition(key))
}

func (s *Server) listMVs(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	jobs, err := s.store.ListJobs(ctx)
	if err != nil {
		return err
	}
	desired, dirErrs, err := s.desiredAll(ctx)
	if err != nil {
		return err
	}
	views, err := Views(jobs, desired, s.condition)
	if err != nil {
		return err
	}
	out := map[string]any{"jobs": views}
	if len(dirErrs) > 0 {
		out["spec_errors"] = dirErrs
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getMV(w http.ResponseWriter, r *http.Request) error {
	db, name, err := s.keyOf(r)
	if err != nil {
		return err
	}
	v, err := s.view(r.Context(), db, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"job": v})
	return nil
}

// createMV stores a spec and starts its MV: 201 when the spec is new, 200
// when the same spec was stored already, 409 when another spec has the name.
func (s *Server) createMV(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	spec, err := specs.ParseJSON(body)
	if err != nil {
		var es specs.Errors
		if errors.As(err, &es) {
			details := make([]string, len(es))
			for i, e := range es {
				details[i] = e.Error()
			}
			return apiErr(http.StatusBadRequest, "invalid spec", details...)
		}
		return apiErr(http.StatusBadRequest, "invalid spec", err.Error())
	}
	ctx := r.Context()
	key := Key(spec.Database, spec.Name)
	hash := specs.Hash(spec)
	conflict := func(why string) error {
		return apiErr(http.StatusConflict, "MV "+key+" exists with a different spec", why,
			"drop it first (DELETE /api/mv/"+key+") to replace it, or choose another name")
	}
	if s.cfg.SpecDir != "" {
		if fd, ok := s.loadSpecDir().byKey[key]; ok && fd.Hash != hash {
			return apiErr(http.StatusConflict, "MV "+key+" is defined in the spec directory", "it is defined in "+fd.File+" with a different spec; change that file instead")
		}
	}
	job, err := getJob(ctx, s.store, spec.Database, spec.Name)
	if err != nil {
		return err
	}
	if job != nil && job.SpecHash != hash {
		return conflict("its job was created from another spec")
	}
	rec, err := SpecRecord(spec, state.OriginAPI)
	if err != nil {
		return err
	}
	created, err := s.store.PutSpec(ctx, rec, false)
	if errors.Is(err, state.ErrSpecConflict) {
		return conflict("another spec is stored under this name")
	}
	if err != nil {
		return err
	}
	if created {
		s.log.Named("api").Info("spec stored", "mv", key, "hash", hash)
	}
	s.Poke(key, hash)
	if all, _, err := s.desiredAll(ctx); err == nil {
		s.pokeReaders(all, spec)
	}
	v, err := s.view(ctx, spec.Database, spec.Name)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, map[string]any{"job": v})
	return nil
}

// deleteMV drops the MV (view, target and Distributed tables, on every
// node), its job and its spec. The spec goes first: a failure halfway leaves
// a job without a spec, which the daemon does not touch and a second DELETE
// drops, rather than a spec that the loop would build again.
func (s *Server) deleteMV(w http.ResponseWriter, r *http.Request) error {
	db, name, err := s.keyOf(r)
	if err != nil {
		return err
	}
	key := Key(db, name)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), opTimeout)
	defer cancel()
	if s.cfg.SpecDir != "" {
		if fd, ok := s.loadSpecDir().byKey[key]; ok {
			return apiErr(http.StatusConflict, "MV "+key+" is defined in the spec directory", "remove it from "+fd.File+" first, or the daemon builds it again")
		}
	}
	job, err := getJob(ctx, s.store, db, name)
	if err != nil {
		return err
	}
	_, err = s.store.GetSpec(ctx, db, name)
	hasSpec := err == nil
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return err
	}
	if job == nil && !hasSpec {
		return notFound(key)
	}
	if err := s.hold(ctx, key); err != nil {
		return err
	}
	defer s.release(key, false)
	if hasSpec {
		if err := s.store.DeleteSpec(ctx, db, name); err != nil && !errors.Is(err, state.ErrNotFound) {
			return err
		}
	}
	if job != nil {
		if err := s.drop(ctx, job); err != nil {
			return lockedOr(err, "drop "+key)
		}
	}
	s.mu.Lock()
	delete(s.keys, key)
	s.mu.Unlock()
	s.q.Forget(key)
	s.log.Named("api").Info("dropped", "mv", key)
	writeJSON(w, http.StatusOK, map[string]string{"status": "deleted"})
	return nil
}

// lockedOr turns a lock held by another process into 409.
func lockedOr(err error, what string) error {
	var le *state.LockedError
	if errors.As(err, &le) {
		return apiErr(http.StatusConflict, le.Error(), "another shirath works on this MV; try again when it is done")
	}
	return fmt.Errorf("%s: %w", what, err)
}

type backfillRequest struct {
	Restart bool `json:"restart"`
}

// backfillMV starts or restarts the backfill; see BackfillRebuilds for what
// it does in each state.
func (s *Server) backfillMV(w http.ResponseWriter, r *http.Request) error {
	db, name, err := s.keyOf(r)
	if err != nil {
		return err
	}
	key := Key(db, name)
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req backfillRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	if q := r.URL.Query().Get("restart"); q != "" {
		v, err := strconv.ParseBool(q)
		if err != nil {
			return apiErr(http.StatusBadRequest, "invalid restart parameter", err.Error())
		}
		req.Restart = req.Restart || v
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), opTimeout)
	defer cancel()
	job, err := getJob(ctx, s.store, db, name)
	if err != nil {
		return err
	}
	d, hasSpec, err := s.desiredOne(ctx, db, name)
	if err != nil {
		return err
	}
	if job == nil && !hasSpec {
		return notFound(key)
	}
	if hasSpec && d.Err != nil {
		return apiErr(http.StatusConflict, "the spec of "+key+" is not valid", d.Err.Error())
	}
	rebuild, err := BackfillRebuilds(job, req.Restart)
	if errors.Is(err, ErrCompleted) {
		return apiErr(http.StatusConflict, "the backfill of "+key+" is already completed",
			"POST /api/mv/"+key+"/backfill?restart=true drops the view and its tables and builds them again from the source")
	}
	if err != nil {
		return err
	}
	hash := d.Hash
	if !hasSpec {
		// A job applied by the CLI: the daemon adopts the spec it was
		// created from, so that it can build it again.
		spec, err := JobSpec(job)
		if err != nil {
			return apiErr(http.StatusConflict, "cannot adopt "+key, err.Error())
		}
		rec, err := SpecRecord(spec, state.OriginAPI)
		if err != nil {
			return err
		}
		if _, err := s.store.PutSpec(ctx, rec, false); err != nil {
			return err
		}
		hash = rec.SpecHash
	}
	if rebuild {
		if err := s.hold(ctx, key); err != nil {
			return err
		}
		err := s.drop(ctx, job)
		s.release(key, false)
		if err != nil {
			return lockedOr(err, "rebuild "+key)
		}
		s.log.Named("api").Info("rebuilding", "mv", key, "was", job.Status)
	}
	s.Poke(key, hash)
	v, err := s.view(ctx, db, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"job": v})
	return nil
}

// getPlan is the plan of every valid desired spec, as `shirath plan --json`
// prints it (nothing is dropped: the daemon plans without destroy).
func (s *Server) getPlan(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	desired, _, err := s.desiredAll(ctx)
	if err != nil {
		return err
	}
	var ss []*specs.Spec
	for _, d := range desired {
		if d.Spec != nil {
			ss = append(ss, d.Spec)
		}
	}
	conn := s.cfg.Connect()
	defer conn.Close()
	p := &planner.Planner{Conn: conn, Store: s.store, Log: s.log.Named("planner")}
	plan, _, err := p.Plan(ctx, ss, false)
	if err != nil {
		return apiErr(http.StatusServiceUnavailable, "plan: "+err.Error())
	}
	writeJSON(w, http.StatusOK, planner.JSONView(plan))
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz reports whether PostgreSQL and ClickHouse answer.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var details []string
	if _, err := s.store.GetSpec(ctx, "", ""); err != nil && !errors.Is(err, state.ErrNotFound) {
		details = append(details, "postgresql: "+err.Error())
	}
	if s.probe == nil {
		details = append(details, "clickhouse: not connected yet")
	} else if conn, err := s.probe.Conn(ctx, s.probe.Seed); err != nil {
		details = append(details, "clickhouse: "+err.Error())
	} else if err := conn.Ping(ctx); err != nil {
		details = append(details, "clickhouse "+s.probe.Seed+": "+err.Error())
	} else {
		// ZooKeeper, where the server has one (ON CLUSTER DDL and Replicated
		// tables need it): system.zookeeper exists only then.
		var n uint64
		err := conn.QueryRow(ctx, "SELECT count() FROM system.zookeeper WHERE path = '/'").Scan(&n)
		var ex *clickhouse.Exception
		if err != nil && !(errors.As(err, &ex) && ex.Code == 60) { // 60: UNKNOWN_TABLE, no ZooKeeper configured
			details = append(details, "zookeeper (through "+s.probe.Seed+"): "+err.Error())
		}
	}
	if len(details) > 0 {
		return apiErr(http.StatusServiceUnavailable, "not ready", details...)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}
