package specs

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
)

// Refresh makes the MV a refreshable one (ClickHouse 23.12 and later, where
// system.view_refreshes exists): instead of handling each INSERT into the
// source, the server runs the whole query on a schedule and replaces the
// target with its result (or appends it, with Append). There is no fence
// and no backfill: the refresh fills the target.
type Refresh struct {
	// Every is the interval between refreshes, e.g. "1 hour", "30 minute".
	Every string `yaml:"every" json:"every"`
	// Offset shifts the schedule inside the interval, e.g. "5 minute" for
	// every hour at :05.
	Offset string `yaml:"offset,omitempty" json:"offset,omitempty"`
	// RandomizeFor spreads the refresh time at random over this interval.
	RandomizeFor string `yaml:"randomize_for,omitempty" json:"randomize_for,omitempty"`
	// Append inserts each result into the target instead of replacing it.
	Append bool `yaml:"append,omitempty" json:"append,omitempty"`
	// DependsOn names refreshable MVs ("name" in the same database, or
	// "db.name") refreshed first: DEPENDS ON.
	DependsOn []string `yaml:"depends_on,omitempty" json:"depends_on,omitempty"`
}

// intervalRE is one or more "N unit" pairs, as REFRESH EVERY and OFFSET
// take them; units in either case, singular or plural.
var (
	intervalRE = regexp.MustCompile(`(?i)^\s*(\d{1,9})\s*(second|minute|hour|day|week|month|year)s?\s*`)
)

// NormalizeInterval returns an interval as ClickHouse's grammar writes it
// ("1 HOUR 30 MINUTE"), or an error.
func NormalizeInterval(s string) (string, error) {
	rest := s
	var parts []string
	for strings.TrimSpace(rest) != "" {
		m := intervalRE.FindStringSubmatch(rest)
		if m == nil {
			return "", fmt.Errorf("%q is not an interval", clip(s))
		}
		parts = append(parts, m[1]+" "+strings.ToUpper(m[2]))
		rest = rest[len(m[0]):]
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("empty interval")
	}
	return strings.Join(parts, " "), nil
}

const intervalHint = `write a number and a unit (second, minute, hour, day, week, month or year), e.g. "1 hour" or "1 hour 30 minute"`

func (v *validator) refresh() {
	r := v.s.Refresh
	if r == nil || v.ix.broken("refresh") {
		return
	}
	if strings.TrimSpace(r.Every) == "" {
		v.missing("refresh.every", intervalHint)
	}
	for _, f := range []struct{ field, value string }{
		{"refresh.every", r.Every}, {"refresh.offset", r.Offset}, {"refresh.randomize_for", r.RandomizeFor},
	} {
		if strings.TrimSpace(f.value) == "" {
			continue
		}
		if _, err := NormalizeInterval(f.value); err != nil {
			v.at(f.field, intervalHint, "%v", err)
		}
	}
	for i, d := range r.DependsOn {
		field := fmt.Sprintf("refresh.depends_on[%d]", i)
		db, name, ok := strings.Cut(d, ".")
		if !ok {
			db, name = "", d
		}
		if (ok && !IsIdentifier(db)) || !IsIdentifier(name) {
			v.at(field, "name another refreshable MV: name, or database.name", "%q is not an MV name", clip(d))
		}
	}
	// The recorded spec of a job carries the defaults: only options set to
	// something else are refused.
	var d Spec
	d.ApplyDefaults()
	if v.ix.has("backfill") && !reflect.DeepEqual(v.s.Backfill, d.Backfill) {
		v.at("backfill", "remove backfill: the refresh fills the target with the whole query's result",
			"a refreshable MV has no backfill")
	}
	if v.s.ChangeStrategy == ChangeModifyQuery {
		v.at("change_strategy", `leave it out: a changed query of a refreshable MV is built beside and switched ("rebuild")`,
			"modify_query is not supported for a refreshable MV")
	}
}

// DependsOnAddresses returns the refresh dependencies as database.name.
func (s *Spec) DependsOnAddresses() []string {
	if s.Refresh == nil {
		return nil
	}
	var out []string
	for _, d := range s.Refresh.DependsOn {
		if !strings.Contains(d, ".") {
			d = s.Database + "." + d
		}
		out = append(out, d)
	}
	return out
}

// Schedule is the refresh clause's schedule as written in SQL (EVERY,
// OFFSET, RANDOMIZE FOR, DEPENDS ON), without APPEND: what ALTER TABLE ...
// MODIFY REFRESH changes in place. "" for an MV that is not refreshable.
func (s *Spec) Schedule() string {
	r := s.Refresh
	if r == nil {
		return ""
	}
	norm := func(x string) string {
		n, err := NormalizeInterval(x)
		if err != nil {
			return x
		}
		return n
	}
	out := "EVERY " + norm(r.Every)
	if strings.TrimSpace(r.Offset) != "" {
		out += " OFFSET " + norm(r.Offset)
	}
	if strings.TrimSpace(r.RandomizeFor) != "" {
		out += " RANDOMIZE FOR " + norm(r.RandomizeFor)
	}
	if deps := s.DependsOnAddresses(); len(deps) > 0 {
		var q []string
		for _, d := range deps {
			db, name, _ := strings.Cut(d, ".")
			q = append(q, "`"+db+"`.`"+name+"`")
		}
		out += " DEPENDS ON " + strings.Join(q, ", ")
	}
	return out
}
