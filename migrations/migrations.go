// Package migrations holds the PostgreSQL schema of shirath's job store as
// numbered SQL files, embedded so that the binary can migrate the database it
// is pointed at without any file on disk. The state package applies them.
//
// A file is named NNNN_name.sql; the number is its version, applied in
// ascending order, each in its own transaction. A file that has been released
// is never edited: a change to the schema is a new file.
package migrations

import "embed"

// FS holds every migration file at its root.
//
//go:embed *.sql
var FS embed.FS
