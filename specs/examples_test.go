package specs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestExamplesValidate loads every example, as the CLI would.
func TestExamplesValidate(t *testing.T) {
	files, err := filepath.Glob("../examples/*.y*ml")
	if err != nil || len(files) < 2 {
		t.Fatalf("examples: %v, %v", files, err)
	}
	for _, f := range files {
		if _, err := LoadPath(f); err != nil {
			t.Errorf("%s:\n%v", f, err)
		}
	}
	for _, dir := range []string{"../examples", "../examples/chain"} {
		if _, err := LoadPath(dir); err != nil {
			t.Errorf("%s:\n%v", dir, err)
		}
	}
}

// TestDesignExampleUnchanged pins examples/products_by_category.yaml to the
// original design's example, field by field, and checks it validates in
// both of its forms: the YAML file and the same document as a JSON body.
func TestDesignExampleUnchanged(t *testing.T) {
	const path = "../examples/products_by_category.yaml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name":         "products_by_category",
		"source_table": "products",
		"engine":       "SummingMergeTree()",
		"order_by":     []any{"category"},
		"columns": []any{
			map[string]any{"name": "category", "type": "String"},
			map[string]any{"name": "cnt", "type": "UInt64"},
			map[string]any{"name": "total_price", "type": "Decimal(18,2)"},
		},
		"select_query": "SELECT category, count() as cnt, sum(price) as total_price FROM {source_table} GROUP BY category",
	}
	if !reflect.DeepEqual(raw, want) {
		t.Errorf("%s is not the design's example:\n got %#v\nwant %#v", path, raw, want)
	}

	specs, err := ParseYAML(path, data)
	if err != nil {
		t.Fatalf("as YAML:\n%v", err)
	}
	body, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	js, err := ParseJSON(body)
	if err != nil {
		t.Fatalf("as JSON:\n%v", err)
	}
	if Hash(js) != Hash(specs[0]) {
		t.Error("the YAML and JSON forms hash differently")
	}
	cols, err := js.OutputColumns()
	if err != nil || !reflect.DeepEqual(cols, []string{"category", "cnt", "total_price"}) {
		t.Errorf("OutputColumns = %v, %v", cols, err)
	}
}
