package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// Desired is the desired spec of one MV, from the store (written through the
// API) or from a file of the spec directory.
type Desired struct {
	Key    string // database.name
	Spec   *specs.Spec
	Hash   string
	Origin string // state.OriginAPI or state.OriginFile
	File   string // for a file spec
	// Err is set when the spec cannot be used (invalid, or defined twice
	// with different contents); Spec is then nil. It is terminal: the key is
	// not retried until its definition changes.
	Err error
	rec *state.SpecRecord
}

// Key is the address of an MV: database.name.
func Key(database, name string) string { return database + "." + name }

// ParseKey reads "name" (in database default) or "database.name".
func ParseKey(s string) (database, name string, err error) {
	database, name = specs.DefaultDatabase, s
	if db, n, ok := strings.Cut(s, "."); ok {
		database, name = db, n
	}
	if !specs.IsIdentifier(database) || !specs.IsIdentifier(name) {
		return "", "", fmt.Errorf("%q is not an MV name: give name or database.name, plain identifiers", s)
	}
	return database, name, nil
}

// specFromRecord parses a stored spec. The API validated it when it was
// stored, but a newer shirath may validate more strictly.
func specFromRecord(rec *state.SpecRecord) Desired {
	d := Desired{Key: Key(rec.Database, rec.Name), Origin: rec.Origin, Hash: rec.SpecHash, rec: rec}
	s, err := specs.ParseJSON(rec.Spec)
	if err != nil {
		d.Err = fmt.Errorf("the stored spec is not valid any more: %w", err)
		return d
	}
	d.Spec = s
	d.Hash = specs.Hash(s)
	return d
}

// dirSpecs is what the spec directory holds.
type dirSpecs struct {
	byKey map[string]Desired
	// errs are problems that cannot be tied to one MV (a file whose specs
	// have no readable name).
	errs []string
}

// loadDir reads every *.yaml and *.yml file of dir. Each file is loaded on
// its own, so that one broken file does not hide the specs of the others; a
// broken file's errors are tied to the MVs it names, when its names can be
// read at all.
func loadDir(dir string) dirSpecs {
	out := dirSpecs{byKey: map[string]Desired{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		out.errs = append(out.errs, fmt.Sprintf("read spec directory %s: %v", dir, err))
		return out
	}
	var files []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.Type().IsRegular() && (ext == ".yaml" || ext == ".yml") && !strings.HasPrefix(e.Name(), ".") {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(files)
	add := func(d Desired) {
		if prev, ok := out.byKey[d.Key]; ok {
			d.Spec = nil
			d.Err = fmt.Errorf("%s is defined twice in the spec directory: in %s and in %s", d.Key, prev.File, d.File)
		}
		out.byKey[d.Key] = d
	}
	for _, f := range files {
		ss, err := specs.LoadPath(f)
		if err == nil {
			for _, s := range ss {
				add(Desired{Key: Key(s.Database, s.Name), Spec: s, Hash: specs.Hash(s), Origin: state.OriginFile, File: f})
			}
			continue
		}
		keys := looseKeys(f)
		if len(keys) == 0 {
			out.errs = append(out.errs, err.Error())
			continue
		}
		for _, k := range keys {
			// The hash of the error text: a fix (or another error) makes it
			// a new definition that is tried again.
			add(Desired{Key: k, Origin: state.OriginFile, File: f, Err: err, Hash: "invalid:" + hashText(err.Error())})
		}
	}
	return out
}

// specDirReuse bounds how long a load of the spec directory is reused while
// no file's name, size or modification time changed: a file rewritten in
// place, to the same size, within the file system's clock granularity is
// seen at the latest then.
const specDirReuse = time.Second

// specDirCache holds the last load of the spec directory. Each GET of an MV
// read and parsed every spec file before: at 200 requests/s over 200 files,
// that was the daemon's whole CPU (BenchmarkDaemon).
type specDirCache struct {
	mu   sync.Mutex
	sig  string
	at   time.Time
	last dirSpecs
}

// loadSpecDir is loadDir of the spec directory, reusing the last load
// while the directory's files look the same (dirSignature), for at most
// specDirReuse. Callers only read what it returns.
func (s *Server) loadSpecDir() dirSpecs {
	sig := dirSignature(s.cfg.SpecDir)
	c := &s.specDir
	c.mu.Lock()
	defer c.mu.Unlock()
	if sig != "" && sig == c.sig && time.Since(c.at) < specDirReuse {
		return c.last
	}
	c.last, c.sig, c.at = loadDir(s.cfg.SpecDir), sig, time.Now()
	return c.last
}

// dirSignature names the spec files of dir with their sizes and
// modification times ("" when the directory cannot be read).
func dirSignature(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return ""
		}
		fmt.Fprintf(&b, "%s\x00%d\x00%d\x00%v\n", e.Name(), info.Size(), info.ModTime().UnixNano(), info.Mode())
	}
	return b.String()
}

// looseKeys reads the name and database of every document of a spec file
// that does not load, to tie its errors to the MVs it meant to define.
func looseKeys(file string) []string {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var keys []string
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc struct {
			Name     any `yaml:"name"`
			Database any `yaml:"database"`
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// A type error still fills the fields it could; a syntax
			// error ends the stream.
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				break
			}
		}
		name, _ := doc.Name.(string)
		db, _ := doc.Database.(string)
		if db == "" {
			db = specs.DefaultDatabase
		}
		if specs.IsIdentifier(name) && specs.IsIdentifier(db) {
			keys = append(keys, Key(db, name))
		}
	}
	return keys
}

// desiredAll merges the specs stored through the API with those of the
// spec directory. A name defined in both with different contents is an
// error of that MV.
func (s *Server) desiredAll(ctx context.Context) (map[string]Desired, []string, error) {
	recs, err := s.store.ListSpecs(ctx)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]Desired{}
	for _, rec := range recs {
		d := specFromRecord(rec)
		out[d.Key] = d
	}
	if s.cfg.SpecDir == "" {
		return out, nil, nil
	}
	ds := s.loadSpecDir()
	s.mu.Lock()
	s.dirErrs = ds.errs
	s.mu.Unlock()
	for k, fd := range ds.byKey {
		if ad, ok := out[k]; ok {
			out[k] = merge(ad, fd)
			continue
		}
		out[k] = fd
	}
	return out, ds.errs, nil
}

func merge(api, file Desired) Desired {
	if api.Err == nil && file.Err == nil && api.Hash == file.Hash {
		return file
	}
	if file.Err != nil {
		return file
	}
	file.Spec = nil
	file.Err = fmt.Errorf("%s is defined in %s and, differently, through the API: delete one of them", file.Key, file.File)
	file.Hash = "conflict:" + api.Hash + ":" + file.Hash
	return file
}

// desiredOne returns the desired spec of key, or false when there is none.
func (s *Server) desiredOne(ctx context.Context, database, name string) (Desired, bool, error) {
	key := Key(database, name)
	var api *Desired
	rec, err := s.store.GetSpec(ctx, database, name)
	switch {
	case errors.Is(err, state.ErrNotFound):
	case err != nil:
		return Desired{}, false, err
	default:
		d := specFromRecord(rec)
		api = &d
	}
	if s.cfg.SpecDir != "" {
		if fd, ok := s.loadSpecDir().byKey[key]; ok {
			if api != nil {
				return merge(*api, fd), true, nil
			}
			return fd, true, nil
		}
	}
	if api != nil {
		return *api, true, nil
	}
	return Desired{}, false, nil
}

func hashText(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// StoredSpecs returns the desired specs of store records, by key.
func StoredSpecs(recs []*state.SpecRecord) map[string]Desired {
	out := make(map[string]Desired, len(recs))
	for _, rec := range recs {
		d := specFromRecord(rec)
		out[d.Key] = d
	}
	return out
}

// upstreamOf returns sp and the desired specs it reads from, directly or
// through others (see planner.WithUpstream).
func (s *Server) upstreamOf(ctx context.Context, sp *specs.Spec) ([]*specs.Spec, error) {
	all, _, err := s.desiredAll(ctx)
	if err != nil {
		return nil, err
	}
	var ss []*specs.Spec
	for _, d := range all {
		if d.Err == nil && d.Spec != nil {
			ss = append(ss, d.Spec)
		}
	}
	return planner.WithUpstream(ss, sp), nil
}
