package sqlgen

import (
	"fmt"
	"strings"
)

// engine is a parsed engine clause: a name and its top-level arguments, kept
// as text.
type engine struct {
	name string
	args []string
}

func (e engine) String() string {
	return e.name + "(" + strings.Join(e.args, ", ") + ")"
}

// parseEngine reads "Name", "Name()" or "Name(arg, ...)". Anything after the
// closing parenthesis is refused: SETTINGS, ORDER BY and PARTITION BY have
// their own places in CREATE TABLE, after the engine, and pasting them along
// with it would produce a statement in the wrong order. The specs package
// owns the authoritative validation; this is the minimum to generate safe SQL
// without depending on it.
func parseEngine(clause string) (engine, error) {
	s := strings.TrimSpace(clause)
	if err := checkFragment("engine", s); err != nil {
		return engine{}, err
	}
	n := 0
	for n < len(s) && isPlainIdent(s[:n+1]) {
		n++
	}
	if n == 0 {
		return engine{}, fmt.Errorf("%w: engine %q does not start with a name", ErrInvalid, clause)
	}
	e := engine{name: s[:n]}
	rest := strings.TrimSpace(s[n:])
	if rest == "" {
		return e, nil
	}
	if rest[0] != '(' || !closesAtEnd(rest) {
		return engine{}, fmt.Errorf("%w: engine %q: only Name(args) is accepted, nothing after the parentheses", ErrInvalid, clause)
	}
	if inner := strings.TrimSpace(rest[1 : len(rest)-1]); inner != "" {
		e.args = splitTopLevel(inner)
		for _, a := range e.args {
			if a == "" {
				return engine{}, fmt.Errorf("%w: engine %q has an empty argument", ErrInvalid, clause)
			}
		}
	}
	return e, nil
}

// closesAtEnd reports whether the '(' at s[0] is closed by the last byte of s,
// for s already accepted by checkFragment.
func closesAtEnd(s string) bool {
	segs, _ := scan(s)
	depth, pos := 0, 0
	for _, seg := range segs {
		if seg.kind == segCode {
			for i, c := range []byte(seg.text) {
				switch c {
				case '(':
					depth++
				case ')':
					depth--
					if depth == 0 {
						return pos+i == len(s)-1
					}
				}
			}
		}
		pos += len(seg.text)
	}
	return false
}

// ReplicatedEngine turns a MergeTree-family engine clause into its Replicated
// form with the given ZooKeeper path and the {replica} macro, keeping the
// engine's own parameters after the two new ones:
// "SummingMergeTree((a, b))" -> "ReplicatedSummingMergeTree('<zkPath>', '{replica}', (a, b))".
// An engine that is already Replicated is returned unchanged, since its path
// was chosen by the user.
func ReplicatedEngine(clause, zkPath string) (string, error) {
	e, err := parseEngine(clause)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(e.name, "Replicated") {
		return clause, nil
	}
	if !strings.HasSuffix(e.name, "MergeTree") {
		return "", fmt.Errorf("%w: engine %s has no Replicated form", ErrInvalid, e.name)
	}
	if zkPath == "" {
		return "", fmt.Errorf("%w: empty ZooKeeper path", ErrInvalid)
	}
	r := engine{
		name: "Replicated" + e.name,
		args: append([]string{quoteString(zkPath), quoteString("{replica}")}, e.args...),
	}
	return r.String(), nil
}
