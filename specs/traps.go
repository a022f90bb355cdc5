package specs

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Traps are YAML that parses into something other than what its author
// meant, or fails with a message about YAML's grammar rather than about
// the spec. yaml.v3 says what it read ("Decimal(18" is not a type, a field
// named "2)"), which hides the cause; the recognisers below find the cause
// and say how to write the value instead.

// nbspHint is the hint for a non-breaking space, which looks like a space
// and is not one to YAML or SQL.
const nbspHint = "replace the non-breaking space (U+00A0, often pasted from a web page or a chat) with a plain space"

// typoQuoteHint is the hint for quotes a word processor or a chat turned
// into typographic ones.
const typoQuoteHint = "typographic quotes (“ ” ‘ ’, added by word processors and chats) are not quotes to ClickHouse: write ' for a string, or nothing"

// runeCol returns the 1-based column of byte index i of s, counted in
// runes as yaml.v3 counts columns.
func runeCol(s string, i int) int { return utf8.RuneCountInString(s[:min(i, len(s))]) + 1 }

// byteAt converts a 1-based rune column of s to a byte index.
func byteAt(s string, col int) int {
	i := 0
	for c := 1; c < col && i < len(s); c++ {
		_, w := utf8.DecodeRuneInString(s[i:])
		i += w
	}
	return i
}

// parenDelta is how much s opens parentheses (outside '...' strings): a
// value cut at a comma leaves its first piece above zero.
func parenDelta(s string) int {
	d, inStr := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inStr && c == '\\':
			i++
		case c == '\'':
			inStr = !inStr
		case !inStr && c == '(':
			d++
		case !inStr && c == ')':
			d--
		}
	}
	return d
}

func isPlainScalar(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.Style == 0 && n.Line > 0
}

func isImplicitNull(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.Style == 0 && n.Value == "" && n.ShortTag() == "!!null"
}

// maxPieces bounds how many pieces of one cut value are looked for, far
// above any type or expression, so that a long list of items with an open
// '(' costs linear time.
const maxPieces = 16

// flowSplit is an unquoted value of a flow collection ({...} or [...])
// that YAML cut at its commas: the piece at Content index first, and the
// pieces after it through index last.
type flowSplit struct {
	last int
	text string // the value as written
}

// mappingSplits finds, in a flow mapping, values with an unclosed '('
// followed by keys without a value that close it: {type: Decimal(18,2)}
// reads as type "Decimal(18" and a field "2)". The result is keyed by the
// Content index of the value's key; last is the key index of the last
// piece.
func (d *nodeDecoder) mappingSplits(n *yaml.Node) map[int]flowSplit {
	if n.Style&yaml.FlowStyle == 0 || n.Line == 0 {
		return nil
	}
	var out map[int]flowSplit
	for i := 0; i+1 < len(n.Content); i += 2 {
		v := n.Content[i+1]
		depth := 0
		if isPlainScalar(v) {
			depth = parenDelta(v.Value)
		}
		if depth <= 0 {
			continue
		}
		pieces := []string{v.Value}
		for j := i + 2; j+1 < len(n.Content) && j < i+2*maxPieces; j += 2 {
			k := n.Content[j]
			if !isPlainScalar(k) || !isImplicitNull(n.Content[j+1]) {
				break
			}
			pieces = append(pieces, k.Value)
			if depth += parenDelta(k.Value); depth <= 0 {
				if out == nil {
					out = map[int]flowSplit{}
				}
				out[i] = flowSplit{last: j, text: d.span(v, k, pieces)}
				i = j
				break
			}
		}
	}
	return out
}

// sequenceSplits is mappingSplits for a flow list of strings:
// [category, round(price, 2)] reads as three items. The result is keyed by
// the index of the first piece.
func (d *nodeDecoder) sequenceSplits(n *yaml.Node) map[int]flowSplit {
	if n.Style&yaml.FlowStyle == 0 || n.Line == 0 {
		return nil
	}
	var out map[int]flowSplit
	for i := 0; i < len(n.Content); i++ {
		v := n.Content[i]
		depth := 0
		if isPlainScalar(v) {
			depth = parenDelta(v.Value)
		}
		if depth <= 0 {
			continue
		}
		pieces := []string{v.Value}
		for j := i + 1; j < len(n.Content) && j < i+maxPieces && isPlainScalar(n.Content[j]); j++ {
			pieces = append(pieces, n.Content[j].Value)
			if depth += parenDelta(n.Content[j].Value); depth <= 0 {
				if out == nil {
					out = map[int]flowSplit{}
				}
				out[i] = flowSplit{last: j, text: d.span(v, n.Content[j], pieces)}
				i = j
				break
			}
		}
	}
	return out
}

// span returns the text of the file from the start of first to the end of
// the plain scalar last, or the pieces joined when they are not on one
// line.
func (d *nodeDecoder) span(first, last *yaml.Node, pieces []string) string {
	if first.Line == last.Line && first.Line <= len(d.lines) {
		src := strings.TrimSuffix(d.lines[first.Line-1], "\r")
		start, end := byteAt(src, first.Column), byteAt(src, last.Column)+len(last.Value)
		if start < end && end <= len(src) {
			return src[start:end]
		}
	}
	return strings.Join(pieces, ", ")
}

// quoteHint says how to quote a value: `quote it: type: "Decimal(18,2)"`.
func quoteHint(path, text string) string {
	key := path[strings.LastIndex(path, ".")+1:]
	if key == "" || strings.HasSuffix(key, "]") {
		return fmt.Sprintf("quote it: %q", text)
	}
	return fmt.Sprintf("quote it: %s: %q", key, text)
}

// flowMappingText is the text of a flow mapping that stands where a string
// was expected (select_query: {source_table}), from its '{' to the end of
// its line without a trailing comment, or "" when it cannot be read back.
func (d *nodeDecoder) flowMappingText(n *yaml.Node) string {
	if n.Style&yaml.FlowStyle == 0 || n.Line < 1 || n.Line > len(d.lines) {
		return ""
	}
	src := strings.TrimSuffix(d.lines[n.Line-1], "\r")
	rest := src[byteAt(src, n.Column):]
	if i := strings.Index(rest, " #"); i >= 0 {
		rest = rest[:i]
	}
	return strings.TrimSpace(rest)
}

// boolWordHint explains a string written where a boolean belongs.
func boolWordHint(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return ""
	}
	switch w := strings.ToLower(n.Value); w {
	case "true", "false":
		return "write " + w + " without quotes"
	case "yes", "y", "on", "no", "n", "off":
		if n.Line == 0 {
			return ""
		}
		want := "true"
		if w == "no" || w == "n" || w == "off" {
			want = "false"
		}
		return fmt.Sprintf("shirath reads YAML 1.2, where only true and false are booleans and %s is the text %q: write %s", n.Value, n.Value, want)
	}
	return ""
}

// commentCut reports where a plain one-line scalar was ended by " #",
// when what follows the '#' looks like the rest of the value (a quote or a
// closing parenthesis): "WHERE note = 'a #1'" loses "#1'" to a comment.
func (d *nodeDecoder) commentCut(n *yaml.Node) (line, col int) {
	if !isPlainScalar(n) || strings.Contains(n.Value, "\n") || n.Line > len(d.lines) {
		return 0, 0
	}
	hash, ok := d.hashLines[n.Line]
	if !ok {
		if d.hashLines == nil {
			d.hashLines = map[int]bool{}
		}
		hash = strings.Contains(d.lines[n.Line-1], "#")
		d.hashLines[n.Line] = hash
	}
	if !hash {
		return 0, 0
	}
	src := strings.TrimSuffix(d.lines[n.Line-1], "\r")
	start := byteAt(src, n.Column)
	if !strings.HasPrefix(src[start:], n.Value) {
		return 0, 0
	}
	after := src[start+len(n.Value):]
	trimmed := strings.TrimLeft(after, " \t")
	if len(trimmed) == len(after) || !strings.HasPrefix(trimmed, "#") || !strings.ContainsAny(trimmed, "'\"`)") {
		return 0, 0
	}
	return n.Line, runeCol(src, len(src)-len(trimmed))
}

// rootSplitsSpecs reports whether a spec's mapping holds "name" twice: two
// specs with the --- between them forgotten.
func rootSplitsSpecs(n *yaml.Node) bool {
	names := 0
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Kind == yaml.ScalarNode && n.Content[i].Value == "name" {
			names++
		}
	}
	return names > 1
}

// keyLineRE is a block mapping line "key: value" or "- key: value": the
// indentation, an optional list dash, the key, and the value's offset.
var keyLineRE = regexp.MustCompile(`^([ \t]*)(- +)?([A-Za-z_][\w.]*):(?:[ \t]+|$)`)

// listItemRE is a list item whose value is not a mapping line: "- [a, b]",
// "- {name: x}".
var listItemRE = regexp.MustCompile(`^[ \t]*- +`)

// syntaxTrap looks at the line yaml.v3 failed on for a known cause, and
// returns the line and column of the cause and a hint. lines is the file,
// line the 1-based line of the error, msg yaml.v3's message.
func syntaxTrap(lines []string, line int, msg string) (at, col int, hint string, ok bool) {
	if line < 1 || line > len(lines) {
		return 0, 0, "", false
	}
	src := strings.TrimSuffix(lines[line-1], "\r")
	indent := len(src) - len(strings.TrimLeft(src, " \t"))
	if i := strings.IndexByte(src[:indent], '\t'); i >= 0 {
		return line, i + 1, "YAML indents with spaces only: replace the tab with spaces", true
	}
	// yaml.v3 may stop on the line after a non-breaking space.
	for l := line; l >= max(1, line-1); l-- {
		s := lines[l-1]
		if i := strings.IndexRune(s, '\u00a0'); i >= 0 {
			return l, runeCol(s, i), nbspHint, true
		}
	}
	m := keyLineRE.FindStringSubmatchIndex(src)
	key, valueAt := "", -1
	switch {
	case m != nil:
		key, valueAt = src[m[6]:m[7]], m[1]
	case listItemRE.MatchString(src):
		valueAt = len(listItemRE.FindString(src))
	}
	block := key // for "write it as a block: select_query: |"
	if block == "" {
		block = "key"
	}
	if valueAt >= 0 && valueAt < len(src) {
		value := src[valueAt:]
		switch value[0] {
		case '{':
			if end := strings.IndexByte(value, '}'); end > 0 {
				after := strings.TrimSpace(value[end+1:])
				if after != "" && after[0] != '#' && after[0] != ',' {
					text := strings.TrimSpace(value)
					h := "a value that starts with '{' is a YAML mapping: " + quoteHint(key, text)
					if strings.Contains(text, "{name}") && key != "" {
						h += "; {name} is not replaced in a spec: leave " + key + " out to get its default"
					}
					return line, runeCol(src, valueAt), h, true
				}
			}
		case '\'', '"':
			if end := closingQuote(value); end > 0 {
				if after := strings.TrimSpace(value[end+1:]); after != "" && after[0] != '#' {
					h := `inside a '...' YAML value write each ' as '' (SQL strings too), or write the value as a block: ` + block + `: | and the text on the lines below, indented`
					if value[0] == '"' {
						h = `inside a "..." YAML value write each " as \", or quote the value with '...' instead, or write it as a block: ` + block + `: | and the text on the lines below, indented`
					}
					return line, runeCol(src, valueAt+end), h, true
				}
			}
		case '`', '@':
			return line, runeCol(src, valueAt), fmt.Sprintf("YAML cannot start an unquoted value with %q: %s", value[0], quoteHint(key, strings.TrimSpace(value))), true
		}
		if c, text, ok := flowCommaInLine(value); ok {
			return line, runeCol(src, valueAt+c), "in a flow mapping {...} or list [...] a comma ends an unquoted value: " + quoteHint(flowKey(value, c), text), true
		}
		if i := strings.Index(value, ": "); i >= 0 && strings.Contains(msg, "mapping values are not allowed") {
			return line, runeCol(src, valueAt+i), "an unquoted value cannot contain \": \" (YAML reads a mapping): quote the whole value, or write it as a block: " + block + ": | and the text on the lines below, indented", true
		}
	}
	// A continuation line of a multi-line unquoted value.
	if m == nil && strings.Contains(msg, "mapping values are not allowed") {
		if i := strings.Index(src, ": "); i >= 0 {
			return line, runeCol(src, i), "an unquoted value cannot contain \": \" (YAML reads a mapping): quote the whole value, or write it as a block (key: | and the text on the lines below, indented)", true
		}
	}
	if m != nil {
		if c, h, ok := misaligned(lines, line, src, m); ok {
			return line, c, h, true
		}
	}
	if strings.Contains(msg, "cannot start any token") {
		for i := 0; i < len(src); i++ {
			if (src[i] == '`' || src[i] == '@') && (i == 0 || strings.ContainsRune(" [{,", rune(src[i-1]))) {
				return line, runeCol(src, i), fmt.Sprintf("YAML cannot start an unquoted value with %q: quote the value", src[i]), true
			}
		}
	}
	return 0, 0, "", false
}

// closingQuote returns the index of the quote that ends the YAML quoted
// scalar starting at s[0], or -1.
func closingQuote(s string) int {
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch {
		case q == '"' && s[i] == '\\':
			i++
		case s[i] == q && q == '\'' && i+1 < len(s) && s[i+1] == '\'':
			i++
		case s[i] == q:
			return i
		}
	}
	return -1
}

// flowCommaInLine finds, in the text of a flow collection that yaml.v3
// could not parse, an unquoted value whose parentheses span a comma
// ({name: e, type: Enum8('a' = 1, 'b' = 2)}), and returns its offset and
// text.
func flowCommaInLine(s string) (off int, text string, ok bool) {
	if s == "" || (s[0] != '{' && s[0] != '[') {
		return 0, "", false
	}
	start := -1
	depth, comma := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' && start >= 0:
			end := closingQuote(s[i:])
			if end < 0 {
				return 0, "", false
			}
			i += end
		case start < 0 && (c == '{' || c == '[' || c == ',' || c == ' ' || c == ':'):
		case start < 0:
			start, depth, comma = i, 0, false
			i--
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 && comma {
				return start, s[start : i+1], true
			}
		case c == ',' && depth > 0:
			comma = true
		case (c == ',' || c == '}' || c == ']') && depth == 0:
			start = -1
		case c == ':' && depth == 0 && i+1 < len(s) && s[i+1] == ' ':
			start = -1
		}
	}
	return 0, "", false
}

// flowKey is the key written just before offset off of a flow mapping's
// text ("type" in "{name: e, type: Enum8(..."), or "".
func flowKey(s string, off int) string {
	before := strings.TrimRight(s[:off], " ")
	if !strings.HasSuffix(before, ":") {
		return ""
	}
	before = strings.TrimSuffix(before, ":")
	i := strings.LastIndexAny(before, "{[, ")
	return before[i+1:]
}

// misaligned recognises a key or a list item indented differently from
// its siblings above it, which yaml.v3 reports as "did not find expected
// '-' indicator" or "mapping values are not allowed". m is src matched by
// keyLineRE.
func misaligned(lines []string, line int, src string, m []int) (col int, hint string, ok bool) {
	dash := m[4] >= 0
	col = m[3] + 1 // of the key, or of the dash
	key := src[m[6]:m[7]]
	for l := line - 1; l >= 1; l-- {
		prev := strings.TrimSuffix(lines[l-1], "\r")
		if t := strings.TrimSpace(prev); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		pm := keyLineRE.FindStringSubmatchIndex(prev)
		if pm == nil {
			return 0, "", false
		}
		pdash := pm[4] >= 0
		if dash {
			// Look up to the item above: past the fields of that item,
			// which are indented further than its dash.
			if !pdash {
				if pm[3]+1 > col {
					continue
				}
				return 0, "", false
			}
			if pc := pm[3] + 1; pc != col && abs(pc-col) <= 2 {
				return col, fmt.Sprintf("align this '-' with the '-' of the item above (line %d, column %d)", l, pc), true
			}
			return 0, "", false
		}
		pcol := pm[3] + 1
		if pdash {
			pcol = pm[5] + 1 // the key after "- "
		}
		if col != pcol && abs(col-pcol) <= 2 {
			return col, fmt.Sprintf("indent %s like %s on line %d (column %d): the fields of one mapping start in the same column", key, prev[pm[6]:pm[7]], l, pcol), true
		}
		return 0, "", false
	}
	return 0, "", false
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
