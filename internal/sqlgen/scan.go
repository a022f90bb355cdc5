package sqlgen

import (
	"fmt"
	"strings"
)

// The few pieces of user text pasted into SQL unparsed (engine clause, column
// types, order_by and partition_by expressions, cast types) are validated by
// the specs package. The scanner below is a second, defensive line: it knows
// just enough of ClickHouse's lexical rules (string literals, quoted
// identifiers, comments) to tell whether a fragment could end the statement
// or hide text from a reader.

// segment is a run of one lexical kind.
type segment struct {
	kind segKind
	text string
}

type segKind int

const (
	segCode    segKind = iota // anything outside literals and comments
	segString                 // '...'
	segQuoted                 // `...` or "..."
	segComment                // -- ... or /* ... */
)

// scan splits SQL text into segments. It fails on an unterminated string,
// quoted identifier or block comment.
func scan(s string) ([]segment, error) {
	var segs []segment
	start := 0
	flush := func(end int) {
		if end > start {
			segs = append(segs, segment{segCode, s[start:end]})
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\'' || c == '`' || c == '"':
			j, err := quotedEnd(s, i)
			if err != nil {
				return nil, err
			}
			flush(i)
			kind := segQuoted
			if c == '\'' {
				kind = segString
			}
			segs = append(segs, segment{kind, s[i:j]})
			i, start = j, j
		case c == '-' && strings.HasPrefix(s[i:], "--"), c == '#':
			// '#' starts a comment on current ClickHouse releases.
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				j = len(s) - i
			}
			flush(i)
			segs = append(segs, segment{segComment, s[i : i+j]})
			i, start = i+j, i+j
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return nil, fmt.Errorf("unterminated comment")
			}
			flush(i)
			segs = append(segs, segment{segComment, s[i : i+2+j+2]})
			i = i + 2 + j + 2
			start = i
		default:
			i++
		}
	}
	flush(len(s))
	return segs, nil
}

// quotedEnd returns the index just past the literal or quoted identifier
// starting at s[i]. Both backslash escapes and a doubled quote character are
// accepted, as ClickHouse does.
func quotedEnd(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated %c quote", q)
}

// checkFragment rejects a user-provided SQL fragment that is empty, holds a
// ';' or a comment outside string literals, has unbalanced parentheses or an
// unterminated literal: anything that could end or reshape the statement it
// is pasted into.
func checkFragment(what, s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	}
	segs, err := scan(s)
	if err != nil {
		return fmt.Errorf("%w: %s %q: %v", ErrInvalid, what, s, err)
	}
	depth := 0
	for _, seg := range segs {
		switch seg.kind {
		case segComment:
			return fmt.Errorf("%w: %s %q holds a comment", ErrInvalid, what, s)
		case segCode:
			for _, c := range []byte(seg.text) {
				switch c {
				case ';':
					return fmt.Errorf("%w: %s %q holds ';'", ErrInvalid, what, s)
				case '(':
					depth++
				case ')':
					depth--
					if depth < 0 {
						return fmt.Errorf("%w: %s %q has unbalanced parentheses", ErrInvalid, what, s)
					}
				}
			}
		}
	}
	if depth != 0 {
		return fmt.Errorf("%w: %s %q has unbalanced parentheses", ErrInvalid, what, s)
	}
	return nil
}

// isPlainIdent reports whether s is an unquoted identifier, which is then
// safe and clearer to backtick-quote.
func isPlainIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return false
	}
	return true
}
