package specs

import (
	"fmt"
	"slices"
	"strings"
)

// Engine is a parsed target table engine such as
// ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/t', '{replica}', (a, b)).
type Engine struct {
	// Name is the engine name as written, with its Replicated prefix.
	Name string
	// Params are the normalised parameters, replication ones included:
	// strings re-quoted ('x'), tuples printed as (a, b).
	Params []string
	// Replicated is true for the Replicated* engines, whose first two
	// parameters are the ZooKeeper path and the replica name.
	Replicated bool
}

// Base returns the engine name without the Replicated prefix.
func (e Engine) Base() string { return strings.TrimPrefix(e.Name, "Replicated") }

// BaseParams returns the parameters of the base engine, without the
// ZooKeeper path and replica name of a Replicated engine.
func (e Engine) BaseParams() []string {
	if e.Replicated && len(e.Params) >= 2 {
		return e.Params[2:]
	}
	return e.Params
}

// String prints the engine with parentheses always, as in
// "SummingMergeTree()", a form every ClickHouse version accepts.
func (e Engine) String() string { return e.Name + "(" + strings.Join(e.Params, ", ") + ")" }

// engineBases are the engines a target table may use: the MergeTree family,
// whose merges make an MV's partial per-block results add up. Other
// engines (Log, Memory, URL, File, Distributed, ...) are refused; some of
// them would read or write outside the database.
var engineBases = []string{
	"MergeTree", "SummingMergeTree", "AggregatingMergeTree", "ReplacingMergeTree",
	"CollapsingMergeTree", "VersionedCollapsingMergeTree",
}

// engineParamRef is a column named in an engine parameter (a sign, a
// version, a column to sum), for Validate to check against the columns.
type engineParamRef struct {
	name string
	off  int
}

type engineParam struct {
	text   string // normalised
	kind   tokKind
	idents []engineParamRef // identifiers inside, for a name or a tuple
	tuple  bool
	off    int
}

// ParseEngine parses and checks an engine clause. A name without
// parentheses is the same as with empty ones ("SummingMergeTree" means
// "SummingMergeTree()"). The error is an *Error without position.
func ParseEngine(s string) (Engine, error) {
	e, _, err := parseEngine(s)
	if err != nil {
		le := asLexError(err)
		return Engine{}, &Error{Msg: fmt.Sprintf("%q is not a valid engine: %s", clip(s), le.msg), Hint: le.hint}
	}
	return e, nil
}

func parseEngine(s string) (Engine, []engineParamRef, error) {
	lx := newLexer(s)
	t, err := lx.Next()
	if err != nil {
		return Engine{}, nil, err
	}
	if t.kind == tokEOF {
		return Engine{}, nil, lx.errAt(0, "write e.g. engine: SummingMergeTree()", "engine is empty")
	}
	if t.kind != tokIdent {
		return Engine{}, nil, lx.errAt(t.off, "write e.g. engine: SummingMergeTree()", "expected an engine name, got %s", t)
	}
	e := Engine{Name: t.text, Params: []string{}}
	e.Replicated = strings.HasPrefix(e.Name, "Replicated")
	if !slices.Contains(engineBases, e.Base()) {
		all := slices.Clone(engineBases)
		for _, b := range engineBases {
			all = append(all, "Replicated"+b)
		}
		hint := "use one of " + strings.Join(engineBases, ", ") + " or their Replicated forms"
		if sug := suggest(e.Name, all); sug != "" {
			hint = fmt.Sprintf("did you mean %s? engine names are case-sensitive", sug)
		}
		return Engine{}, nil, lx.errAt(t.off, hint, "engine %q is not supported for a target table", e.Name)
	}

	var params []engineParam
	nx, err := lx.Next()
	if err != nil {
		return Engine{}, nil, err
	}
	switch nx.kind {
	case tokEOF:
	case tokLParen:
		if params, err = engineParams(lx, 0); err != nil {
			return Engine{}, nil, err
		}
		end, err := lx.Next()
		if err != nil {
			return Engine{}, nil, err
		}
		if end.kind != tokEOF {
			return Engine{}, nil, lx.errAt(end.off, "the engine field holds only Name(params); put sorting and partitioning in order_by and partition_by",
				"unexpected %s after the engine parameters", end)
		}
	default:
		return Engine{}, nil, lx.errAt(nx.off, "the engine field holds only Name(params); put sorting and partitioning in order_by and partition_by",
			"unexpected %s after the engine name", nx)
	}
	for _, p := range params {
		e.Params = append(e.Params, p.text)
	}

	base := params
	if e.Replicated {
		if len(params) < 2 || params[0].kind != tokString || params[1].kind != tokString {
			return Engine{}, nil, lx.errAt(t.off, fmt.Sprintf("write %s('/clickhouse/tables/{shard}/<table>', '{replica}'%s)", e.Name, placeholderParams(e.Base())),
				"%s needs the ZooKeeper path and the replica name as its first two parameters", e.Name)
		}
		base = params[2:]
	}
	at := nx.off // the '(' of the parameters, or the name when there are none
	if nx.kind == tokEOF {
		at = t.off
	}
	refs, err := checkEngineParams(lx, e, base, at)
	if err != nil {
		return Engine{}, nil, err
	}
	return e, refs, nil
}

func placeholderParams(base string) string {
	switch base {
	case "CollapsingMergeTree":
		return ", sign"
	case "VersionedCollapsingMergeTree":
		return ", sign, version"
	}
	return ""
}

// checkEngineParams checks the number and kind of parameters per engine:
// the only parameters these engines take in the new syntax are column
// names. The old syntax (MergeTree(date, (key), 8192)) is refused because
// order_by and partition_by say the same in their own fields.
func checkEngineParams(lx *lexer, e Engine, params []engineParam, off int) ([]engineParamRef, error) {
	var refs []engineParamRef
	names := func(lo, hi int, tupleOK bool, usage string) error {
		if len(params) < lo || len(params) > hi {
			hint := "write " + usage
			if len(params) > hi {
				hint += "; sorting and partitioning go in order_by and partition_by"
			}
			return lx.errAt(off, hint, "%s takes %s", e.Base(), countWords(lo, hi))
		}
		for _, p := range params {
			if p.kind != tokIdent && !(tupleOK && p.tuple) {
				return lx.errAt(p.off, "write "+usage, "%s parameters must be column names, got %s", e.Base(), p.text)
			}
			refs = append(refs, p.idents...)
		}
		return nil
	}
	var err error
	switch e.Base() {
	case "MergeTree", "AggregatingMergeTree":
		err = names(0, 0, false, e.Base()+"()")
	case "SummingMergeTree":
		err = names(0, 1, true, "SummingMergeTree() or SummingMergeTree((col1, col2)) to sum only those columns")
	case "ReplacingMergeTree":
		err = names(0, 2, false, "ReplacingMergeTree() or ReplacingMergeTree(version_column)")
	case "CollapsingMergeTree":
		err = names(1, 1, false, "CollapsingMergeTree(sign_column)")
	case "VersionedCollapsingMergeTree":
		err = names(2, 2, false, "VersionedCollapsingMergeTree(sign_column, version_column)")
	}
	return refs, err
}

func countWords(lo, hi int) string {
	switch {
	case lo == 0 && hi == 0:
		return "no parameters"
	case lo == hi:
		return fmt.Sprintf("exactly %d column parameter(s)", lo)
	}
	return fmt.Sprintf("%d to %d column parameter(s)", lo, hi)
}

// engineParams reads parameters after '(' up to and including ')'.
func engineParams(lx *lexer, depth int) ([]engineParam, error) {
	var params []engineParam
	t, err := lx.Peek()
	if err != nil {
		return nil, err
	}
	if t.kind == tokRParen {
		lx.Next()
		return params, nil
	}
	for {
		p, err := engineParamOne(lx, depth)
		if err != nil {
			return nil, err
		}
		params = append(params, p)
		t, err := lx.Next()
		if err != nil {
			return nil, err
		}
		switch t.kind {
		case tokComma:
			continue
		case tokRParen:
			return params, nil
		case tokEOF:
			return nil, lx.errAt(t.off, "close every '(' with a ')'", "unbalanced parentheses: missing ')'")
		}
		return nil, lx.errAt(t.off, "separate parameters with ','", "expected ',' or ')', got %s", t)
	}
}

func engineParamOne(lx *lexer, depth int) (engineParam, error) {
	t, err := lx.Next()
	if err != nil {
		return engineParam{}, err
	}
	if depth > 8 {
		return engineParam{}, lx.errAt(t.off, "flatten the parameters", "engine parameters nest too deep")
	}
	switch t.kind {
	case tokIdent:
		nx, err := lx.Peek()
		if err != nil {
			return engineParam{}, err
		}
		if nx.kind == tokLParen {
			return engineParam{}, lx.errAt(t.off, "engine parameters are column names, numbers or strings",
				"function call %s(...) is not allowed in engine parameters", t.text)
		}
		return engineParam{text: t.text, kind: tokIdent, idents: []engineParamRef{{t.text, t.off}}, off: t.off}, nil
	case tokNumber:
		return engineParam{text: t.text, kind: tokNumber, off: t.off}, nil
	case tokString:
		return engineParam{text: quoteString(t.text), kind: tokString, off: t.off}, nil
	case tokEOF:
		return engineParam{}, lx.errAt(t.off, "close every '(' with a ')'", "unbalanced parentheses: missing ')'")
	case tokLParen:
		inner, err := engineParams(lx, depth+1)
		if err != nil {
			return engineParam{}, err
		}
		p := engineParam{kind: tokLParen, tuple: true, off: t.off}
		parts := make([]string, len(inner))
		for i, in := range inner {
			parts[i] = in.text
			if in.kind != tokIdent {
				p.tuple = false // a tuple of column names is the only tuple the engines take
			}
			p.idents = append(p.idents, in.idents...)
		}
		p.text = "(" + strings.Join(parts, ", ") + ")"
		return p, nil
	}
	return engineParam{}, lx.errAt(t.off, "engine parameters are column names, numbers, 'strings' or (tuples)",
		"expected a parameter, got %s", t)
}
