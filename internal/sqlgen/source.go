package sqlgen

import "fmt"

// The statements below read the source table for the backfill's
// bookkeeping. Keys are printed as integers and identifiers quoted here, like
// every other statement.

// MaxKey reads the largest key of the source (0 when it is empty).
func (m MV) MaxKey() string {
	return fmt.Sprintf("SELECT toInt64(max(%s)) FROM %s", m.key(), m.table(m.Spec.SourceTable))
}

// MaxKeyFrom reads the largest key of the source among the keys at or above
// from (0 when there is none): on a source sorted by the key, the primary
// index skips the rest.
func (m MV) MaxKeyFrom(from int64) string {
	return fmt.Sprintf("SELECT toInt64(max(%s)) FROM %s WHERE %s >= %d", m.key(), m.table(m.Spec.SourceTable), m.key(), from)
}

// MaxKeyCount reads the largest key and the row count of the source.
func (m MV) MaxKeyCount() string {
	return fmt.Sprintf("SELECT toInt64(max(%s)), toUInt64(count()) FROM %s", m.key(), m.table(m.Spec.SourceTable))
}

// CountUpTo reads how many source rows have a key at or below the fence, and
// the smallest key.
func (m MV) CountUpTo(fence int64) string {
	return fmt.Sprintf("SELECT toInt64(count()), toInt64(min(%s)) FROM %s WHERE %s <= %d", m.key(), m.table(m.Spec.SourceTable), m.key(), fence)
}

// CountRange reads how many source rows have a key in (lo, hi].
func (m MV) CountRange(lo, hi int64) string {
	return fmt.Sprintf("SELECT toInt64(count()) FROM %s WHERE %s > %d AND %s <= %d", m.table(m.Spec.SourceTable), m.key(), lo, m.key(), hi)
}

// SyncSource makes a replica of a Replicated source fetch what its
// replication queue knows of.
func (m MV) SyncSource() string {
	return "SYSTEM SYNC REPLICA " + m.table(m.Spec.SourceTable)
}

func (m MV) key() string { return Ident(m.Spec.Backfill.KeyColumn) }
