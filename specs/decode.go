package specs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Specs are decoded from a yaml.Node tree rather than with yaml.Unmarshal
// so that every field's line and column is kept (in a fieldIndex) for the
// errors Validate reports later, and so that unknown fields and wrong types
// become positioned errors with hints. JSON bodies are turned into the same
// node tree (without lines) and go through the same decoder, so the API and
// the files accept exactly the same documents.

// fieldIndex records where each field of one spec was written, by path
// ("columns[1].type").
type fieldIndex struct {
	pos map[string]fieldPos
	// bad holds the fields that failed to decode, so that Validate does not
	// add "is required" to "must be a string" for the same field.
	bad map[string]bool
}

type fieldPos struct {
	line, col int // of the value
	null      bool
	// nullText is how a null value was written ("null", "~"; "" when
	// left empty), for the hint of a name that YAML read as null.
	nullText string
	// cutLine and cutCol locate a " #" that ended a plain value as a
	// comment while the rest of the line looks like more of the value.
	cutLine, cutCol int
	// lit maps byte offsets of the value to file positions when the value
	// is written so that the mapping is exact (a one-line scalar, or a
	// literal block); errors inside a type or a query then point at the
	// offending character instead of the start of the field.
	lit []litLine
}

// litLine says that the value's bytes from off onwards start at line:col.
type litLine struct{ off, line, col int }

// has reports whether the field was written with a non-null value.
func (ix *fieldIndex) has(path string) bool {
	if ix == nil {
		return false
	}
	p, ok := ix.pos[path]
	return ok && !p.null
}

// get returns where and how a field was written (zero when it was not).
func (ix *fieldIndex) get(path string) fieldPos {
	if ix == nil {
		return fieldPos{}
	}
	return ix.pos[path]
}

// broken reports whether the field or one of its parents failed to decode.
func (ix *fieldIndex) broken(path string) bool {
	if ix == nil {
		return false
	}
	for {
		if ix.bad[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

// at returns the position of a field's value, or of the closest enclosing
// field that was written (a defaulted target_table points at name's
// mapping, a missing field at the document).
func (ix *fieldIndex) at(path string) (line, col int) {
	if ix == nil {
		return 0, 0
	}
	for {
		if p, ok := ix.pos[path]; ok {
			return p.line, p.col
		}
		if path == "" {
			return 0, 0
		}
		path = parentPath(path)
	}
}

// atOffset returns the position of byte off of the field's value, exact
// when the value's layout allows it and the value's start otherwise.
func (ix *fieldIndex) atOffset(path string, value string, off int) (line, col int) {
	if ix != nil {
		if p, ok := ix.pos[path]; ok && len(p.lit) > 0 && off >= 0 && off <= len(value) {
			l := p.lit[0]
			for _, c := range p.lit[1:] {
				if c.off <= off {
					l = c
				}
			}
			return l.line, l.col + utf8.RuneCountInString(value[l.off:off])
		}
	}
	return ix.at(path)
}

func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func joinPath(parent, field string) string {
	if parent == "" {
		return field
	}
	return parent + "." + field
}

type nodeDecoder struct {
	file  string
	lines []string // the source, for exact positions inside values
	ix    *fieldIndex
	errs  Errors
	// visits counts decoded nodes: aliases let a small document name a
	// large node many times, and the budget keeps that linear.
	visits int
	// hashLines caches which lines hold a '#', so that looking for a
	// comment after every scalar of a long line stays linear.
	hashLines map[int]bool
}

// maxVisits bounds the nodes decoded for one document, far above any
// real spec.
const maxVisits = 200_000

func newNodeDecoder(file string, src []byte) *nodeDecoder {
	d := &nodeDecoder{file: file, ix: &fieldIndex{pos: map[string]fieldPos{}, bad: map[string]bool{}}}
	if src != nil {
		d.lines = strings.Split(string(src), "\n")
	}
	return d
}

func (d *nodeDecoder) fail(line, col int, field, hint, format string, args ...any) {
	d.ix.bad[field] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Column: col, Field: field,
		Msg: fmt.Sprintf(format, args...), Hint: hint})
}

func (d *nodeDecoder) failAt(n *yaml.Node, field, hint, format string, args ...any) {
	d.fail(n.Line, n.Column, field, hint, format, args...)
}

var (
	durationType = reflect.TypeFor[Duration]()
	specType     = reflect.TypeFor[Spec]()
)

// decodeSpec decodes one document's root node into a Spec.
func (d *nodeDecoder) decodeSpec(root *yaml.Node) *Spec {
	s := &Spec{}
	d.decode("", nil, root, reflect.ValueOf(s).Elem(), 0)
	s.Origin = Origin{File: d.file, Line: root.Line, fields: d.ix}
	return s
}

// resolve follows YAML aliases (*name) to the anchored node. Anchors are
// allowed (a shared backfill block is handy); the schema is shallow, so an
// alias cannot make decoding blow up.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func (d *nodeDecoder) record(path string, n *yaml.Node) {
	p := fieldPos{line: n.Line, col: n.Column}
	p.null = n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	if p.null {
		p.nullText = n.Value
	}
	if n.Kind == yaml.ScalarNode && n.Line > 0 {
		p.lit = d.literalLayout(n)
		p.cutLine, p.cutCol = d.commentCut(n)
	}
	d.ix.pos[path] = p
}

// literalLayout works out where each byte of a scalar's value sits in the
// file, for one-line plain or quoted scalars and for literal blocks (|),
// and returns nil when the value cannot be mapped exactly (escapes,
// folding), in which case errors point at the start of the value.
func (d *nodeDecoder) literalLayout(n *yaml.Node) []litLine {
	line := func(no int) (string, bool) {
		if no < 1 || no > len(d.lines) {
			return "", false
		}
		return strings.TrimSuffix(d.lines[no-1], "\r"), true
	}
	switch n.Style {
	case 0, yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		if strings.Contains(n.Value, "\n") {
			return nil
		}
		src, ok := line(n.Line)
		if !ok {
			return nil
		}
		start, col := byteAt(src, n.Column), n.Column
		if n.Style != 0 {
			start, col = start+1, col+1 // past the opening quote
		}
		rest := ""
		if start <= len(src) {
			rest = src[start:]
		}
		// The value must stand in the line as is, closing quote included:
		// then no escape changed it and offsets map one to one.
		if strings.HasPrefix(rest, n.Value) && (n.Style == 0 || strings.HasPrefix(rest[len(n.Value):], src[start-1:start])) {
			return []litLine{{0, n.Line, col}}
		}
	case yaml.LiteralStyle:
		parts := strings.Split(strings.TrimSuffix(n.Value, "\n"), "\n")
		indent := -1
		var out []litLine
		off := 0
		for i, part := range parts {
			no := n.Line + 1 + i
			src, ok := line(no)
			if !ok {
				return nil
			}
			if part != "" {
				if indent < 0 {
					indent = len(src) - len(strings.TrimLeft(src, " "))
				}
				if indent > len(src) || src[indent:] != part {
					return nil
				}
			}
			out = append(out, litLine{off, no, max(indent, 0) + 1})
			off += len(part) + 1
		}
		return out
	}
	return nil
}

func kindWord(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int", "!!float":
			return "a number (" + n.Value + ")"
		case "!!bool":
			return "a boolean (" + n.Value + ")"
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("a string (%q)", clip(n.Value))
		case "!!timestamp":
			return "a date (" + n.Value + ")"
		}
		return "a value tagged " + n.Tag
	}
	return "an unexpected node"
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// fieldNames maps the yaml names of a struct's fields to their index.
func fieldNames(t reflect.Type) (map[string]int, []string) {
	m := map[string]int{}
	var names []string
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = i
		names = append(names, name)
	}
	return m, names
}

// spend counts one node against the budget and reports whether decoding
// may go on.
func (d *nodeDecoder) spend(n *yaml.Node, path string) bool {
	d.visits++
	if d.visits == maxVisits && n != nil {
		d.failAt(n, path, "a spec needs no more than a few hundred values; check for aliases (*name) repeated many times",
			"document is too large to decode (more than %d values)", maxVisits)
	}
	return d.visits < maxVisits
}

func (d *nodeDecoder) decode(path string, key, n *yaml.Node, v reflect.Value, depth int) {
	if !d.spend(n, path) {
		return
	}
	n = resolve(n)
	if n == nil || n.Kind == yaml.AliasNode || depth > 8 {
		if key != nil {
			d.failAt(key, path, "remove the alias loop", "cannot resolve this value")
		}
		return
	}
	d.record(path, n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty value is the same as leaving the field out
	}
	if v.Type() == durationType {
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			d.failAt(n, path, `write a duration with its unit, such as "2s" or "500ms"`, "must be a duration, got %s", kindWord(n))
			return
		}
		dur, err := parseDuration(n.Value)
		if err != nil {
			d.failAt(n, path, `write a duration with its unit, such as "2s" or "500ms"`, "%v", err)
			return
		}
		v.Set(reflect.ValueOf(Duration{dur}))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(path, n, v, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			hint := "write a list, e.g. [a, b] or one '- item' per line"
			if v.Type().Elem().Kind() == reflect.Struct {
				hint = "write a list of mappings, one '- name: ...' per item"
			}
			d.failAt(n, path, hint, "must be a list, got %s", kindWord(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(fmt.Sprintf("%s[%d]", path, i), nil, c, s.Index(i), depth+1)
		}
		v.Set(s)
		if v.Type().Elem().Kind() == reflect.String {
			for i, sp := range d.sequenceSplits(n) {
				field := fmt.Sprintf("%s[%d]", path, i)
				d.failAt(n.Content[i], field, quoteHint(field, sp.text),
					"unquoted item %q is cut at ',': in a flow list [...] a comma ends an unquoted item", sp.text)
				for j := i + 1; j <= sp.last; j++ {
					d.ix.bad[fmt.Sprintf("%s[%d]", path, j)] = true
				}
			}
		}
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(path, nil, n, p.Elem(), depth+1)
		v.Set(p)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			hint := "write a string"
			if n.Kind == yaml.ScalarNode {
				hint = fmt.Sprintf("quote it if you mean the text: %q", n.Value)
			} else if text := d.flowMappingText(n); text != "" {
				hint = "a value that starts with '{' is a YAML mapping: " + quoteHint(path, text)
			}
			d.failAt(n, path, hint, "must be a string, got %s", kindWord(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			hint := "write true or false"
			if h := boolWordHint(n); h != "" {
				hint = h
			}
			d.failAt(n, path, hint, "must be true or false, got %s", kindWord(n))
			return
		}
		v.SetBool(b)
	case reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&u) != nil {
			d.failAt(n, path, "write a whole number such as 1000000 (or 1_000_000)", "must be a whole number >= 0, got %s", kindWord(n))
			return
		}
		v.SetUint(u)
	default:
		// Only reachable if spec.go gains a field of a new kind.
		d.failAt(n, path, "", "internal error: cannot decode a %s", v.Type())
	}
}

func (d *nodeDecoder) decodeStruct(path string, n *yaml.Node, v reflect.Value, depth int) {
	fields, names := fieldNames(v.Type())
	if n.Kind != yaml.MappingNode {
		what := "a mapping of fields"
		if v.Type() == specType {
			what = "a spec (a mapping with name, source_table, engine, ...)"
		}
		hint := "write " + what
		if v.Type() == specType {
			hint = "each YAML document is one spec; separate specs with ---"
		}
		d.failAt(n, path, hint, "must be %s, got %s", what, kindWord(n))
		return
	}
	seen := map[string]*yaml.Node{}
	splits := d.mappingSplits(n)
	// Two specs without the --- between them read as one mapping with
	// every field twice: one error says so, instead of one per field.
	twoSpecs := path == "" && v.Type() == specType && rootSplitsSpecs(n)
	reportedTwo := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.spend(k, path) {
			return
		}
		sp, split := splits[i]
		if split {
			i = sp.last // the pieces after the value are part of it
		}
		if k.Kind != yaml.ScalarNode {
			d.failAt(k, path, "field names are plain words such as name or source_table", "a field name must be a string, got %s", kindWord(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.failAt(k, path, "write the fields out, or use an anchor for a whole value (backfill: *defaults)",
				"YAML merge keys (<<) are not supported")
			continue
		}
		fp := joinPath(path, k.Value)
		if prev, ok := seen[k.Value]; ok {
			hint := "keep one of them"
			if twoSpecs {
				if reportedTwo {
					continue // the first repeated field said it all
				}
				reportedTwo = true
				hint = "each spec is one YAML document: if a second spec starts here, put a line --- before it; otherwise keep one of them"
			}
			d.failAt(k, fp, hint, "field is set twice (first at line %d, column %d)", prev.Line, prev.Column)
			continue
		}
		seen[k.Value] = k
		fi, ok := fields[k.Value]
		if !ok {
			hint := "known fields are " + strings.Join(names, ", ")
			if s := suggest(k.Value, names); s != "" {
				hint = "did you mean " + s + "?"
			}
			if j := strings.IndexRune(k.Value, '\u00a0'); j >= 0 && k.Line > 0 {
				d.fail(k.Line, k.Column+utf8.RuneCountInString(k.Value[:j]), fp, nbspHint, "unknown field")
				continue
			}
			d.failAt(k, fp, hint, "unknown field")
			continue
		}
		if split {
			d.record(fp, val)
			d.failAt(val, fp, quoteHint(fp, sp.text),
				"unquoted value %q is cut at ',': in a flow mapping {...} a comma ends an unquoted value", sp.text)
			continue
		}
		d.decode(fp, k, val, v.Field(fi), depth+1)
	}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlSyntaxError turns a yaml.v3 parse error ("yaml: line 3: ...") into
// an Error on that line (yaml.v3 gives no column).
func yamlSyntaxError(file string, err error) *Error {
	msg := err.Error()
	e := &Error{File: file, Msg: "not valid YAML: " + strings.TrimPrefix(msg, "yaml: "),
		Hint: "check indentation, quoting and that ':' is followed by a space"}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "not valid YAML: " + m[2]
	}
	return e
}

// locateSyntaxError finds the line of a YAML syntax error. yaml.v3 often
// reports the line where the enclosing block starts (line 1 for a bad
// indentation on line 9), so it looks for the shortest prefix of the file
// (in whole lines) that fails with the same error: the parser reads
// sequentially, so every prefix holding the bad line fails the same way,
// and a binary search needs a dozen parses even for a large file.
func locateSyntaxError(data []byte, msg string) (line, col int, ok bool) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	ends := make([]int, len(lines)) // ends[i]: length of the prefix holding lines 0..i
	n := 0
	for i, l := range lines {
		n += len(l)
		ends[i] = n
	}
	same := func(i int) bool {
		err := parseYAMLStream(data[:ends[i]])
		return err != nil && err.Error() == msg
	}
	i, j := 0, len(lines)-1
	if j < 0 || !same(j) {
		return 0, 0, false
	}
	for i < j {
		if m := (i + j) / 2; same(m) {
			j = m
		} else {
			i = m + 1
		}
	}
	text := strings.TrimRight(string(lines[i]), "\r\n")
	return i + 1, len(text) - len(strings.TrimLeft(text, " \t")) + 1, true
}

func parseYAMLStream(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// decodeYAML decodes every document of a YAML stream. It stops at the
// first syntax error, after which yaml.v3 cannot resynchronise.
func decodeYAML(file string, data []byte) ([]*Spec, Errors) {
	var specs []*Spec
	var errs Errors
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			e := yamlSyntaxError(file, err)
			if line, col, ok := locateSyntaxError(data, err.Error()); ok {
				e.Line, e.Column = line, col
				if line, col, hint, ok := syntaxTrap(strings.Split(string(data), "\n"), line, err.Error()); ok {
					e.Line, e.Column, e.Hint = line, col, hint
				}
			}
			errs = append(errs, e)
			break
		}
		if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
			continue
		}
		root := resolve(doc.Content[0])
		if root == nil || (root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null") {
			continue // an empty document, e.g. after a trailing ---
		}
		d := newNodeDecoder(file, data)
		s := d.decodeSpec(root)
		errs = append(errs, d.errs...)
		specs = append(specs, s)
	}
	return specs, errs
}

// maxJSONDepth bounds the recursion of jsonToNode; a spec is 3 levels deep.
const maxJSONDepth = 64

// jsonToNode reads one JSON value into a yaml.Node tree, keeping key order
// and duplicate keys (which encoding/json would silently collapse) so the
// node decoder can report them. JSON's own escapes (\/, surrogate pairs)
// are decoded by encoding/json, which yaml.v3 would refuse.
func jsonToNode(body []byte) (*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	n, err := jsonValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("unexpected data after the JSON object at offset %d", dec.InputOffset())
	}
	return n, nil
}

func jsonValue(dec *json.Decoder, depth int) (*yaml.Node, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("JSON nests more than %d levels deep", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("unexpected end of JSON")
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				ks, _ := k.(string) // json.Decoder guarantees object keys are strings
				v, err := jsonValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ks}, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		case '[':
			n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for dec.More() {
				v, err := jsonValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		}
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t, Style: yaml.DoubleQuotedStyle}, nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(string(t), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(t)}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(t)}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}
