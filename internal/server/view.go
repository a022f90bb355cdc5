package server

import (
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/shirath/shirath/state"
)

// View renders one MV as the API shows it: the job as the job store renders
// it (state.Job's JSON view), or, for a spec not started yet, a job with
// status pending and no id; plus where its spec comes from ("origin": api,
// file, or null for a job applied from files by the CLI) and the daemon's
// reconcile condition ("reconcile", null outside the daemon).
//
// A terminal condition (invalid spec, blocked change) is also put in
// error_message when the job has none, so that a client reading only the
// original design's fields sees why nothing happens.
func View(job *state.Job, d *Desired, cond *Condition) (map[string]json.RawMessage, error) {
	var pending bool
	if job == nil {
		if d == nil {
			return nil, errors.New("view: neither a job nor a spec")
		}
		pending = true
		job = pendingJob(d)
	}
	b, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	v := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	if pending {
		v["id"] = json.RawMessage("null")
	}
	set := func(k string, x any) {
		b, err := json.Marshal(x)
		if err == nil {
			v[k] = b
		}
	}
	var origin *string
	if d != nil {
		origin = &d.Origin
	}
	set("origin", origin)
	set("reconcile", cond)
	msg := ""
	switch {
	case d != nil && d.Err != nil:
		msg = d.Err.Error()
	case cond != nil && cond.Terminal:
		msg = cond.Message
	}
	if msg != "" && job.ErrorMessage == "" {
		set("error_message", msg)
	}
	return v, nil
}

func pendingJob(d *Desired) *state.Job {
	j := &state.Job{Status: state.StatusPending}
	j.Database, j.Name, _ = ParseKey(d.Key)
	if d.Spec != nil {
		j.SourceTable, j.TargetTable = d.Spec.SourceTable, d.Spec.TargetTable
		if d.Spec.Cluster != "auto" {
			j.ClusterName = d.Spec.Cluster
		}
	}
	if d.rec != nil {
		j.InsertedAt, j.UpdatedAt = d.rec.CreatedAt, d.rec.UpdatedAt
	} else {
		j.InsertedAt = time.Now()
		j.UpdatedAt = j.InsertedAt
	}
	return j
}

// Views renders every job and every desired spec without a job, ordered by
// database and name.
func Views(jobs []*state.Job, desired map[string]Desired, cond func(key string) *Condition) ([]map[string]json.RawMessage, error) {
	type item struct {
		key string
		v   map[string]json.RawMessage
	}
	var items []item
	seen := map[string]bool{}
	get := func(key string) *Condition {
		if cond == nil {
			return nil
		}
		return cond(key)
	}
	for _, j := range jobs {
		key := Key(j.Database, j.Name)
		seen[key] = true
		var d *Desired
		if dd, ok := desired[key]; ok {
			d = &dd
		}
		v, err := View(j, d, get(key))
		if err != nil {
			return nil, err
		}
		items = append(items, item{key, v})
	}
	for key, d := range desired {
		if seen[key] {
			continue
		}
		v, err := View(nil, &d, get(key))
		if err != nil {
			return nil, err
		}
		items = append(items, item{key, v})
	}
	sort.Slice(items, func(i, k int) bool { return items[i].key < items[k].key })
	out := make([]map[string]json.RawMessage, len(items))
	for i, it := range items {
		out[i] = it.v
	}
	return out, nil
}
