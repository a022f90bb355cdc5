package sqlgen

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/shirath/shirath/specs"
)

// A change of a live MV builds the new version beside the old one under
// physical names, then switches readers to it (executor/swap.go):
//
//   - version 1 uses the spec's names: the MV {name} writes into the real
//     table {target_table};
//   - version N >= 2 is the MV {name}__vN writing into {target_table}__vN,
//     and readers' {target_table} is a Merge table over {target_table}__vN;
//     on a cluster {distributed_table} reads {target_table}__vN directly.
//
// ClickHouse binds an MV to its target by name on every INSERT, and an MV's
// name cannot be renamed on 18.16: so the MV that fills a version keeps its
// physical target name for ever, and only readers' names move.

// VersionedName is the physical name of object name in version v.
func VersionedName(name string, v int) string {
	if v <= 1 {
		return name
	}
	return fmt.Sprintf("%s__v%d", name, v)
}

// Versioned returns a copy of the spec with the physical names of version v:
// its MV, its target and the Distributed table built with it (renamed to the
// spec's distributed_table when readers are switched).
func Versioned(s *specs.Spec, v int) *specs.Spec {
	c := *s
	c.Name = VersionedName(s.Name, v)
	c.TargetTable = VersionedName(s.TargetTable, v)
	if s.DistributedTable != "" {
		c.DistributedTable = VersionedName(s.DistributedTable, v)
	}
	return &c
}

// Holder names: NextName is the Merge table prepared for readers before a
// switch; PrevName receives what readers' name held, when a RENAME switches
// (an EXCHANGE leaves the old table under the NextName or the versioned
// Distributed name instead).
func NextName(name string) string { return name + "__next" }
func PrevName(name string) string { return name + "__prev" }

// MergeRegexp is the regular expression of a Merge table that reads exactly
// the table named physical.
func MergeRegexp(physical string) string { return "^" + regexp.QuoteMeta(physical) + "$" }

// ReadersOver reports whether a table, by its engine and engine_full as
// system.tables prints them, is the Merge table that reads exactly physical
// (CreateReaders).
func ReadersOver(engine, full, physical string) bool {
	return engine == "Merge" && strings.Contains(full, "'"+MergeRegexp(physical)+"'")
}

// DistributedOver reports whether a table is a Distributed table over
// physical.
func DistributedOver(engine, full, physical string) bool {
	return engine == "Distributed" && strings.Contains(full, "'"+physical+"'")
}

// CreateReaders creates, under name, a Merge table with the columns of the
// physical table and reading only it:
//
//	CREATE TABLE IF NOT EXISTS db.name AS db.physical ENGINE = Merge('db', '^physical$')
func CreateReaders(db, name, physical string) string {
	return "CREATE TABLE IF NOT EXISTS " + Table(db, name) + " AS " + Table(db, physical) +
		" ENGINE = Merge(" + quoteString(db) + ", " + quoteString(MergeRegexp(physical)) + ")"
}

// Rename renames tables in one statement: pairs are old, new, old, new...
// Several renames in one RENAME TABLE are switched under one lock on every
// version: a reader sees all of them or none.
func Rename(db string, pairs ...string) string {
	q := "RENAME TABLE "
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			q += ", "
		}
		q += Table(db, pairs[i]) + " TO " + Table(db, pairs[i+1])
	}
	return q
}

// Exchange swaps the names of two tables atomically (Atomic databases).
func Exchange(db, a, b string) string {
	return "EXCHANGE TABLES " + Table(db, a) + " AND " + Table(db, b)
}

// Drop drops a table by name, SYNC where the server has it.
func (m MV) Drop(name string, onCluster bool) string { return m.drop(name, onCluster) }

// ModifyQuery replaces the MV's query in place, keeping its fence:
//
//	ALTER TABLE db.mv MODIFY QUERY <query with key > fence>
func (m MV) ModifyQuery(fence int64) (string, error) {
	q, err := m.viewQuery(Range{After: &fence})
	if err != nil {
		return "", err
	}
	return "ALTER TABLE " + m.table(m.Spec.Name) + " MODIFY QUERY " + q, nil
}

// Leftovers are the names that version live's MV and the switches before it
// may have left behind, once live is recorded as the version readers see:
// the MVs of earlier versions first (one of them left would write into a
// name that is now a Merge table, or into a table about to go), then
// Distributed tables, then readers' holders and the earlier versions'
// targets and stages. None of them is read by anyone after a finished
// switch; a DROP of a Replicated one can take minutes on 18.16 (one
// ZooKeeper request per node of its part tree), so a switch may leave some
// for the next apply. The live version's own objects are never in it; the
// versioned Distributed table of the live version is, because an EXCHANGE
// leaves the old Distributed table under that name.
func Leftovers(s *specs.Spec, live int) []string {
	if live <= 1 {
		return nil
	}
	var mvs, dists, tables []string
	for k := 1; k < live; k++ {
		v := Versioned(s, k)
		mvs = append(mvs, v.Name)
		if k > 1 {
			tables = append(tables, v.TargetTable, MV{Spec: v}.StageTable())
			if s.DistributedTable != "" {
				dists = append(dists, v.DistributedTable)
			}
		}
	}
	if s.DistributedTable != "" {
		dists = append(dists, PrevName(s.DistributedTable), VersionedName(s.DistributedTable, live))
	}
	tables = append([]string{PrevName(s.TargetTable), NextName(s.TargetTable)}, tables...)
	return append(append(mvs, dists...), tables...)
}
