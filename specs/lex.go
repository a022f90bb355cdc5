package specs

import (
	"errors"
	"fmt"
	"strings"
)

// The lexer below reads the small languages that appear inside spec fields
// and are pasted into DDL by sqlgen: column types and engine parameters. It
// accepts only identifiers, numbers, single-quoted strings, parentheses,
// commas and '='. Anything else (a ';', a comment, a backtick, an operator)
// is an error, which is what keeps these fields from smuggling SQL.

type tokKind int

const (
	tokEOF tokKind = iota
	tokIdent
	tokNumber
	tokString
	tokLParen
	tokRParen
	tokComma
	tokEq
)

func (k tokKind) String() string {
	switch k {
	case tokEOF:
		return "end of text"
	case tokIdent:
		return "a name"
	case tokNumber:
		return "a number"
	case tokString:
		return "a string"
	case tokLParen:
		return "'('"
	case tokRParen:
		return "')'"
	case tokComma:
		return "','"
	case tokEq:
		return "'='"
	}
	return "?"
}

type token struct {
	kind tokKind
	// text is the identifier or number as written, or the decoded value of
	// a string.
	text string
	off  int // byte offset in the input
}

// String describes a token for error messages: "name ORDER", "number 1".
func (t token) String() string {
	switch t.kind {
	case tokIdent:
		return "name " + t.text
	case tokNumber:
		return "number " + t.text
	case tokString:
		return "string " + quoteString(t.text)
	}
	return t.kind.String()
}

// lexError is an error at a byte offset of the lexed text, so that callers
// can point at the exact column in the YAML file.
type lexError struct {
	off  int
	msg  string
	hint string
}

func (e *lexError) Error() string { return e.msg }

type lexer struct {
	src  string
	off  int
	peek *token
}

func newLexer(s string) *lexer { return &lexer{src: s} }

func (l *lexer) errAt(off int, hint, format string, args ...any) *lexError {
	return &lexError{off: off, msg: fmt.Sprintf(format, args...), hint: hint}
}

// Peek returns the next token without consuming it.
func (l *lexer) Peek() (token, error) {
	if l.peek != nil {
		return *l.peek, nil
	}
	t, err := l.scan()
	if err != nil {
		return t, err
	}
	l.peek = &t
	return t, nil
}

// Next consumes and returns the next token.
func (l *lexer) Next() (token, error) {
	if l.peek != nil {
		t := *l.peek
		l.peek = nil
		return t, nil
	}
	return l.scan()
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (l *lexer) scan() (token, error) {
	for l.off < len(l.src) && (l.src[l.off] == ' ' || l.src[l.off] == '\t' || l.src[l.off] == '\n' || l.src[l.off] == '\r') {
		l.off++
	}
	start := l.off
	if l.off >= len(l.src) {
		return token{kind: tokEOF, off: start}, nil
	}
	c := l.src[l.off]
	switch {
	case c == '(':
		l.off++
		return token{kind: tokLParen, text: "(", off: start}, nil
	case c == ')':
		l.off++
		return token{kind: tokRParen, text: ")", off: start}, nil
	case c == ',':
		l.off++
		return token{kind: tokComma, text: ",", off: start}, nil
	case c == '=':
		l.off++
		return token{kind: tokEq, text: "=", off: start}, nil
	case c == '\'':
		return l.scanString()
	case isIdentStart(c):
		for l.off < len(l.src) && isIdentChar(l.src[l.off]) {
			l.off++
		}
		return token{kind: tokIdent, text: l.src[start:l.off], off: start}, nil
	case isDigit(c) || (c == '-' && l.off+1 < len(l.src) && isDigit(l.src[l.off+1])):
		return l.scanNumber()
	}
	switch {
	case c == ';':
		return token{}, l.errAt(start, "a type or engine is a single expression; remove the ';'", "unexpected ';'")
	case c == '-' && strings.HasPrefix(l.src[start:], "--"), c == '/' && strings.HasPrefix(l.src[start:], "/*"), c == '#':
		return token{}, l.errAt(start, "comments are not allowed here; put them in YAML comments (#) outside the value", "unexpected comment")
	case c == '`' || c == '"':
		return token{}, l.errAt(start, "write plain names without quotes", "unexpected quoted identifier")
	}
	r := l.src[start:]
	if len(r) > 8 {
		r = r[:8] + "…"
	}
	hint := "only names, numbers, 'strings', parentheses, ',' and '=' may appear here"
	switch {
	case strings.HasPrefix(l.src[start:], "\u00a0"):
		hint = nbspHint
	case strings.HasPrefix(l.src[start:], "“"), strings.HasPrefix(l.src[start:], "”"), strings.HasPrefix(l.src[start:], "‘"), strings.HasPrefix(l.src[start:], "’"):
		hint = typoQuoteHint
	}
	return token{}, l.errAt(start, hint, "unexpected %q", r)
}

func (l *lexer) scanNumber() (token, error) {
	start := l.off
	if l.src[l.off] == '-' {
		l.off++
	}
	digits := func() {
		for l.off < len(l.src) && isDigit(l.src[l.off]) {
			l.off++
		}
	}
	if l.src[l.off] == '0' && l.off+1 < len(l.src) && isDigit(l.src[l.off+1]) {
		// ClickHouse reads 016 as octal (FixedString(016) is 14 bytes long).
		return token{}, l.errAt(l.off, "write the number without leading zeros", "number with a leading zero")
	}
	digits()
	if l.off < len(l.src) && l.src[l.off] == '.' {
		l.off++
		if l.off >= len(l.src) || !isDigit(l.src[l.off]) {
			return token{}, l.errAt(l.off, "write numbers like 0.5", "malformed number")
		}
		digits()
	}
	if l.off < len(l.src) && (l.src[l.off] == 'e' || l.src[l.off] == 'E') {
		l.off++
		if l.off < len(l.src) && (l.src[l.off] == '+' || l.src[l.off] == '-') {
			l.off++
		}
		if l.off >= len(l.src) || !isDigit(l.src[l.off]) {
			return token{}, l.errAt(l.off, "write numbers like 1e6", "malformed number")
		}
		digits()
	}
	if l.off < len(l.src) && isIdentChar(l.src[l.off]) {
		return token{}, l.errAt(l.off, "separate a number from the next name", "malformed number")
	}
	return token{kind: tokNumber, text: l.src[start:l.off], off: start}, nil
}

// scanString reads a ClickHouse single-quoted string: backslash escapes and
// doubled quotes. Control characters are refused: none belongs in a type or
// an engine parameter, and they make error messages and DDL unreadable.
func (l *lexer) scanString() (token, error) {
	start := l.off
	l.off++ // opening quote
	var b strings.Builder
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case c == '\'':
			if l.off+1 < len(l.src) && l.src[l.off+1] == '\'' {
				b.WriteByte('\'')
				l.off += 2
				continue
			}
			l.off++
			return token{kind: tokString, text: b.String(), off: start}, nil
		case c == '\\':
			if l.off+1 >= len(l.src) {
				return token{}, l.errAt(start, "close the string with '", "unterminated string")
			}
			switch e := l.src[l.off+1]; e {
			case '\\', '\'':
				b.WriteByte(e)
			default:
				return token{}, l.errAt(l.off, `only \\ and \' escapes are allowed here`, "unsupported escape \\%c", e)
			}
			l.off += 2
		case c < 0x20 || c == 0x7f:
			return token{}, l.errAt(l.off, "remove the control character", "control character in string")
		default:
			b.WriteByte(c)
			l.off++
		}
	}
	return token{}, l.errAt(start, "close the string with '", "unterminated string")
}

// quoteString prints s as a ClickHouse string literal the way ClickHouse
// prints it back (backslash escapes), so normalised forms compare equal.
func quoteString(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
	return b.String()
}

// asLexError returns err as a *lexError; every error of the type and
// engine parsers is one, and anything else is reported at the start.
func asLexError(err error) *lexError {
	var le *lexError
	if errors.As(err, &le) {
		return le
	}
	return &lexError{off: -1, msg: err.Error()}
}
