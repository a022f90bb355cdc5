package specs

import (
	"encoding/json"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// parseDuration accepts Go duration strings only ("2s", "500ms"). A bare
// number is refused: "2" could mean seconds or nanoseconds.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return d, nil
}

// MarshalJSON writes the duration as a string such as "2s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.Duration.String()) }

// UnmarshalJSON reads a string such as "2s" or "500ms".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"2s\" or \"500ms\"")
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration as a string such as "2s".
func (d Duration) MarshalYAML() (any, error) { return d.Duration.String(), nil }

// UnmarshalYAML reads a string such as "2s" or "500ms". The spec loaders
// decode durations themselves to report positions; this is for code that
// decodes a Duration with yaml.v3 directly.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return fmt.Errorf("line %d: a duration must be a string such as \"2s\" or \"500ms\"", n.Line)
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes settle_delay even when it is zero: yaml.v3 would drop
// a zero Duration under omitempty, and a left-out settle_delay reads back
// as the 1s default, not 0s.
func (b Backfill) MarshalYAML() (any, error) {
	type plain Backfill // the same fields without this method
	var n yaml.Node
	if err := n.Encode(plain(b)); err != nil {
		return nil, err
	}
	if b.SettleDelay.Duration == 0 {
		n.Content = append(n.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "settle_delay"},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "0s"})
	}
	return &n, nil
}
