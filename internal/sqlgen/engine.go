package sqlgen

import (
	"fmt"

	"github.com/shirath/shirath/specs"
)

// parseEngine reads an engine clause with the specs package's parser, so
// that generation and validation agree on what an engine clause is (only
// the MergeTree family, only Name(params), parameters normalised). The
// fragment check in front is this package's own guard against text that
// could end the statement, whatever the parser accepts.
func parseEngine(clause string) (specs.Engine, error) {
	if err := checkFragment("engine", clause); err != nil {
		return specs.Engine{}, err
	}
	e, err := specs.ParseEngine(clause)
	if err != nil {
		return specs.Engine{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return e, nil
}

// ReplicatedEngine turns a MergeTree-family engine clause into its Replicated
// form with the given ZooKeeper path and the {replica} macro, keeping the
// engine's own parameters after the two new ones:
// "SummingMergeTree((a, b))" -> "ReplicatedSummingMergeTree('<zkPath>', '{replica}', (a, b))".
// An engine that is already Replicated is returned unchanged, since its path
// was chosen by the user.
func ReplicatedEngine(clause, zkPath string) (string, error) {
	e, err := parseEngine(clause)
	if err != nil {
		return "", err
	}
	if e.Replicated {
		return clause, nil
	}
	if zkPath == "" {
		return "", fmt.Errorf("%w: empty ZooKeeper path", ErrInvalid)
	}
	r := specs.Engine{
		Name:       "Replicated" + e.Name,
		Params:     append([]string{quoteString(zkPath), quoteString("{replica}")}, e.Params...),
		Replicated: true,
	}
	return r.String(), nil
}
