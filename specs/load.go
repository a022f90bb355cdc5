package specs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Size limits: far above any real spec, low enough that a runaway file or
// request body cannot exhaust memory in the decoder.
const (
	maxYAMLBytes = 16 << 20
	maxJSONBytes = 1 << 20
)

// LoadPath loads the specs of a YAML file, or of every *.yaml and *.yml
// file directly inside a directory (in name order). Each file may hold
// several documents separated by ---. Defaults are applied and every spec
// is validated; the error, if any, is an Errors listing every problem of
// every file.
//
// A directory without any spec is an error rather than an empty result: a
// plan over zero specs would drop every managed view, and an empty or
// mistyped directory is far more likely than that intent.
func LoadPath(path string) ([]*Spec, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: fmt.Sprintf("cannot read: %v", err), Hint: "give a spec file or a directory of *.yaml files"}}
	}
	files := []string{path}
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, Errors{{File: path, Msg: fmt.Sprintf("cannot list: %v", err)}}
		}
		files = files[:0]
		for _, e := range entries {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			if e.Type().IsRegular() && (ext == ".yaml" || ext == ".yml") && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		slices.Sort(files)
	}
	var all []*Spec
	var errs Errors
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, &Error{File: f, Msg: fmt.Sprintf("cannot read: %v", err)})
			continue
		}
		specs, ferrs := decodeYAMLLimited(f, data)
		all = append(all, specs...)
		errs = append(errs, ferrs...)
	}
	errs = append(errs, finish(all)...)
	if len(all) == 0 && len(errs) == 0 {
		errs = append(errs, &Error{File: path, Msg: "no specs found",
			Hint: "put one spec per YAML document in *.yaml or *.yml files"})
	}
	if len(errs) > 0 {
		return nil, errs.finalize()
	}
	return all, nil
}

// ParseYAML parses the specs of one YAML stream; name is used as the file
// name in errors. It applies defaults and validates like LoadPath. A stream
// without documents gives no specs and no error.
func ParseYAML(name string, data []byte) ([]*Spec, error) {
	specs, errs := decodeYAMLLimited(name, data)
	errs = append(errs, finish(specs)...)
	if len(errs) > 0 {
		return nil, errs.finalize()
	}
	return specs, nil
}

func decodeYAMLLimited(name string, data []byte) ([]*Spec, Errors) {
	if len(data) > maxYAMLBytes {
		return nil, Errors{{File: name, Msg: fmt.Sprintf("file is %d bytes, more than %d", len(data), maxYAMLBytes),
			Hint: "split the specs into several files"}}
	}
	return decodeYAML(name, data)
}

// ParseJSON parses one spec from a REST API body: a JSON object with the
// same fields as the YAML form. Unknown fields, duplicate fields and wrong
// types are errors; errors name the field path instead of a line. It
// applies defaults and validates.
func ParseJSON(body []byte) (*Spec, error) {
	if len(body) > maxJSONBytes {
		return nil, Errors{{Msg: fmt.Sprintf("body is %d bytes, more than %d", len(body), maxJSONBytes), Hint: "send one spec per request"}}
	}
	root, err := jsonToNode(body)
	if err != nil {
		return nil, Errors{{Msg: "body is not valid JSON: " + err.Error(), Hint: "send one JSON object with the spec's fields"}}
	}
	d := newNodeDecoder("", nil)
	s := d.decodeSpec(root)
	errs := append(d.errs, finish([]*Spec{s})...)
	if len(errs) > 0 {
		return nil, errs.finalize()
	}
	return s, nil
}

// finish applies defaults, validates every spec and checks that no two
// specs claim the same view or table.
func finish(specs []*Spec) Errors {
	var errs Errors
	for _, s := range specs {
		s.ApplyDefaults()
		errs = append(errs, s.Validate()...)
	}
	return append(errs, checkUnique(specs)...)
}

// checkUnique reports a name defined twice, and two specs whose view,
// target or Distributed tables collide in one database (the second would
// silently take over the first one's table).
func checkUnique(specs []*Spec) Errors {
	var errs Errors
	type owner struct {
		s     *Spec
		field string
	}
	where := func(s *Spec, field string) string {
		line, col := s.Origin.fields.at(field)
		switch {
		case s.Origin.File == "":
			return "in the same request"
		case line == 0:
			return s.Origin.File
		}
		return fmt.Sprintf("%s:%d:%d", s.Origin.File, line, col)
	}
	names := map[string]*Spec{}
	tables := map[string]owner{}
	for _, s := range specs {
		if s.Name == "" {
			continue
		}
		if prev, dup := names[s.Name]; dup {
			errs = append(errs, s.ErrorAt("name", fmt.Sprintf("%q is already defined at %s", s.Name, where(prev, "name")),
				"every spec needs its own name; remove or rename one of them"))
			continue
		}
		names[s.Name] = s
		for _, f := range []struct{ field, table string }{
			{"name", s.Name}, {"target_table", s.TargetTable}, {"distributed_table", s.DistributedTable},
		} {
			if f.table == "" {
				continue
			}
			key := s.Database + "." + f.table
			if prev, dup := tables[key]; dup && prev.s != s {
				errs = append(errs, s.ErrorAt(f.field,
					fmt.Sprintf("table %q is also the %s of spec %q (%s)", f.table, prev.field, prev.s.Name, where(prev.s, prev.field)),
					"each spec needs its own view, target and Distributed tables"))
				continue
			}
			tables[key] = owner{s, f.field}
		}
	}
	return errs
}
