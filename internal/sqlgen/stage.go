package sqlgen

// A staged batch is written into a stage table of the target's structure and
// then moved into the target partition by partition. Each MOVE PARTITION is
// atomic, and the stage holds nothing but the batch in flight, so after a
// crash the server itself tells what is left to do, without a query log:
// parts still in the stage have not reached the target. Servers with
// ALTER TABLE ... MOVE PARTITION ... TO TABLE (20.x and later) use it for
// targets that do not replicate.

// StageTable is the stage's name: beside the target, in its database.
func (m MV) StageTable() string { return "_shirath_stage_" + m.Spec.TargetTable }

// CreateStage creates the stage as a copy of the target's structure and
// engine (MOVE PARTITION needs both to be the same). It runs on one node,
// never ON CLUSTER: each copy of the target has its own stage.
func (m MV) CreateStage() string {
	return "CREATE TABLE IF NOT EXISTS " + m.table(m.StageTable()) + " AS " + m.table(m.Spec.TargetTable)
}

// TruncateStage empties the stage before a batch is written into it.
func (m MV) TruncateStage() string { return "TRUNCATE TABLE IF EXISTS " + m.table(m.StageTable()) }

// DropStage drops the stage.
func (m MV) DropStage(onCluster bool) string { return m.drop(m.StageTable(), onCluster) }

// StageBatch is BackfillBatch writing into the stage instead of the target.
func (m MV) StageBatch(r Range) (string, error) { return m.backfillInto(m.StageTable(), r, false) }

// MoveStagePartition moves one partition of the stage, by its partition_id
// in system.parts, into the target.
func (m MV) MoveStagePartition(partitionID string) string {
	return "ALTER TABLE " + m.table(m.StageTable()) + " MOVE PARTITION ID " + quoteString(partitionID) + " TO TABLE " + m.table(m.Spec.TargetTable)
}
