package sqlgen

// CreateRefreshable creates a refreshable MV: the whole query, on the
// spec's schedule, into the target (replaced at each refresh, or appended
// to with refresh.append). No fence: each refresh reads the whole source.
//
//	CREATE MATERIALIZED VIEW IF NOT EXISTS db.mv REFRESH EVERY 1 HOUR [OFFSET ...]
//	  [RANDOMIZE FOR ...] [DEPENDS ON ...] [APPEND] TO db.target AS SELECT ...
func (m MV) CreateRefreshable(onCluster bool) (string, error) {
	q, err := m.Query(Range{})
	if err != nil {
		return "", err
	}
	appendTo := ""
	if m.Spec.Refresh.Append {
		appendTo = " APPEND"
	}
	return "CREATE MATERIALIZED VIEW IF NOT EXISTS " + m.table(m.Spec.Name) + m.onCluster(onCluster) +
		" REFRESH " + m.Spec.Schedule() + appendTo + " TO " + m.table(m.Spec.TargetTable) + " AS " + q, nil
}

// ModifyRefresh changes a refreshable MV's schedule in place:
//
//	ALTER TABLE db.mv MODIFY REFRESH EVERY ...
func (m MV) ModifyRefresh(onCluster bool) string {
	return "ALTER TABLE " + m.table(m.Spec.Name) + m.onCluster(onCluster) + " MODIFY REFRESH " + m.Spec.Schedule()
}
