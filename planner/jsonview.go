package planner

// JSONPlan is the machine-readable view of a plan, as `shirath plan --json`
// prints it and the daemon's GET /api/plan returns it: the plan's own fields
// (format_version, fingerprint, resource_changes with actions as strings,
// destroy) and a summary with snake_case keys.
type JSONPlan struct {
	*Plan
	Summary JSONSummary `json:"summary"`
}

// JSONSummary is Summary with the JSON keys of the rest of the document.
type JSONSummary struct {
	Adopt   int `json:"adopt"`
	Create  int `json:"create"`
	Change  int `json:"change"`
	Destroy int `json:"destroy"`
	Blocked int `json:"blocked"`
}

// JSONView returns the JSON view of p.
func JSONView(p *Plan) JSONPlan { return JSONPlan{Plan: p, Summary: JSONSummary(p.Summary())} }
