package specs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
)

// Hash returns a stable SHA-256 (hex) of the spec with its defaults
// applied, to tell "same name, different spec" apart. Equivalent spellings
// hash the same: left-out defaults, "Decimal(18,2)" and "Decimal(18, 2)",
// "SummingMergeTree" and "SummingMergeTree()", surrounding whitespace of the
// query. The query text is otherwise hashed as written: a lossy
// normalisation could make two different queries look equal. Origin is
// not part of the hash.
func Hash(s *Spec) string {
	if s == nil {
		return ""
	}
	c := *s
	c.OrderBy = slices.Clone(s.OrderBy)
	c.Columns = slices.Clone(s.Columns)
	c.ApplyDefaults()
	for i, col := range c.Columns {
		if t, err := ParseType(col.Type); err == nil {
			c.Columns[i].Type = t
		}
	}
	if e, err := ParseEngine(c.Engine); err == nil {
		c.Engine = e.String()
	}
	for i, k := range c.OrderBy {
		c.OrderBy[i] = strings.TrimSpace(k)
	}
	c.PartitionBy = strings.TrimSpace(c.PartitionBy)
	c.SelectQuery = strings.TrimSpace(c.SelectQuery)
	// Protection is not part of what is built: changing it changes nothing
	// in ClickHouse (apply only records it).
	c.PreventDestroy = false
	// How a change is made is not what is built either.
	c.ChangeStrategy = ""
	// A refresh schedule is changed in place (MODIFY REFRESH); what the
	// refresh builds, and whether it appends, are part of the hash.
	if c.Refresh != nil {
		c.Refresh = &Refresh{Append: c.Refresh.Append}
	}
	// Struct fields marshal in declaration order and contain no maps, so
	// the encoding is canonical; it cannot fail for these field types.
	b, err := json.Marshal(&c)
	if err != nil {
		panic("specs: marshal spec for hashing: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
