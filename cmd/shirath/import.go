package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
)

// ImportCmd is `shirath import`.
type ImportCmd struct {
	Names []string `arg:"" optional:"" help:"MVs to import (database.name, or name in database default)."`
	All   []string `name:"all" help:"Import every materialized view of this database (repeatable)." placeholder:"DATABASE"`
	Out   string   `name:"out" default:"." help:"Directory the spec files are written to (one database.name.yaml per MV)." type:"path"`
}

// Validate is called by kong once the flags are parsed.
func (c *ImportCmd) Validate() error {
	if len(c.Names) == 0 && len(c.All) == 0 {
		return errors.New("name the MVs to import (database.name), or --all DATABASE")
	}
	return nil
}

func (c *ImportCmd) Run(a *app, ctx context.Context) error {
	conn := a.connector()
	defer conn.Close()
	found, err := conn.Import(ctx, c.Names, c.All)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return fmt.Errorf("import: create %s: %w", c.Out, err)
	}
	refused := 0
	for _, im := range found {
		if im.Spec == nil {
			refused++
			continue
		}
		p := filepath.Join(c.Out, im.Address()+".yaml")
		if err := os.WriteFile(p, importedYAML(im), 0o644); err != nil {
			return fmt.Errorf("import %s: %w", im.Address(), err)
		}
		where := "a single node"
		if im.Spec.Cluster != "" {
			where = "cluster " + im.Spec.Cluster
		}
		fmt.Fprintf(a.stdout, "%s: wrote %s (%s)\n", im.Address(), p, where)
	}
	renderImportRefusals(a.stdout, found)
	if len(found) == 0 {
		fmt.Fprintln(a.stdout, "No materialized views found.")
	}
	if refused > 0 {
		return fmt.Errorf("%d of %d MVs could not be imported (listed above with the reason)", refused, len(found))
	}
	return nil
}

// renderImportRefusals lists the MVs that cannot be written as specs, and the
// notes of those that were.
func renderImportRefusals(w io.Writer, found []*planner.Imported) {
	for _, im := range found {
		if im.Spec == nil {
			fmt.Fprintf(w, "%s: not imported: %s\n", im.Address(), im.Refused)
		}
		for _, n := range im.Notes {
			fmt.Fprintf(w, "%s: note: %s\n", im.Address(), n)
		}
	}
}

// importedSpec orders a spec's fields for a file written by import; the
// names that are the defaults are left out.
type importedSpec struct {
	Name             string         `yaml:"name"`
	Database         string         `yaml:"database"`
	Cluster          string         `yaml:"cluster,omitempty"`
	SourceTable      string         `yaml:"source_table"`
	TargetTable      string         `yaml:"target_table,omitempty"`
	DistributedTable string         `yaml:"distributed_table,omitempty"`
	Engine           string         `yaml:"engine"`
	OrderBy          []string       `yaml:"order_by,flow"`
	PartitionBy      string         `yaml:"partition_by,omitempty"`
	Columns          []specs.Column `yaml:"columns"`
	SelectQuery      string         `yaml:"select_query"`
}

// importedYAML renders an imported MV as a spec file.
func importedYAML(im *planner.Imported) []byte {
	s := im.Spec
	out := importedSpec{
		Name: s.Name, Database: s.Database, Cluster: s.Cluster, SourceTable: s.SourceTable, Engine: s.Engine,
		OrderBy: s.OrderBy, PartitionBy: s.PartitionBy, Columns: s.Columns, SelectQuery: s.SelectQuery,
	}
	if s.TargetTable != s.Name+"_data" {
		out.TargetTable = s.TargetTable
	}
	if s.Cluster != "" && s.DistributedTable != s.Name+"_dist" {
		out.DistributedTable = s.DistributedTable
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Imported by shirath import from the live MV %s: plan adopts it as it is.\n", im.Address())
	for _, n := range im.Notes {
		fmt.Fprintf(&b, "# Note: %s\n", n)
	}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		// Strings and string slices always encode.
		panic("import: encode spec: " + err.Error())
	}
	enc.Close()
	return b.Bytes()
}
