package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
func View(job *state.Job, d *Desired, cond *Condition) (json.RawMessage, error) {
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
	v, err := parseObject(b)
	if err != nil {
		return nil, err
	}
	if pending {
		v.set("id", json.RawMessage("null"))
	}
	var origin *string
	if d != nil {
		origin = &d.Origin
	}
	if err := v.setValue("origin", origin); err != nil {
		return nil, err
	}
	if err := v.setValue("reconcile", cond); err != nil {
		return nil, err
	}
	if cond != nil && cond.Refresh != nil {
		if err := v.setValue("refresh", cond.Refresh); err != nil {
			return nil, err
		}
	}
	msg := ""
	switch {
	case d != nil && d.Err != nil:
		msg = d.Err.Error()
	case cond != nil && cond.Terminal:
		msg = cond.Message
	}
	if msg != "" && job.ErrorMessage == "" {
		if err := v.setValue("error_message", msg); err != nil {
			return nil, err
		}
	}
	return v.marshal(), nil
}

// object is a JSON object that keeps the order of its fields, so that the
// API shows the job's fields in the job store's order, followed by the
// daemon's own.
type object []field

type field struct {
	key string
	val json.RawMessage
}

func parseObject(b []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("view: not a JSON object: %s", b)
	}
	var o object
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, ok := t.(string)
		if !ok {
			return nil, fmt.Errorf("view: bad key %v", t)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		o = append(o, field{k, raw})
	}
	return o, nil
}

func (o *object) set(key string, val json.RawMessage) {
	for i := range *o {
		if (*o)[i].key == key {
			(*o)[i].val = val
			return
		}
	}
	*o = append(*o, field{key, val})
}

func (o *object) setValue(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	o.set(key, b)
	return nil
}

func (o object) marshal() json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(f.val)
	}
	b.WriteByte('}')
	return b.Bytes()
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
func Views(jobs []*state.Job, desired map[string]Desired, cond func(key string) *Condition) ([]json.RawMessage, error) {
	type item struct {
		key string
		v   json.RawMessage
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
	out := make([]json.RawMessage, len(items))
	for i, it := range items {
		out[i] = it.v
	}
	return out, nil
}
