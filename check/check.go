package check

import (
	"github.com/meshguard/meshguard/policy"
)

// Result is a finding and where its object was read.
type Result struct {
	policy.Finding
	Source
}

// Summary counts what a run saw and found.
type Summary struct {
	Documents int `json:"documents"`
	Objects   int `json:"objects"`
	Ignored   int `json:"ignored"`
	Deny      int `json:"deny"`
	Warn      int `json:"warn"`
}

// Report is the outcome of judging a bundle.
type Report struct {
	Results []Result `json:"findings"`
	Summary Summary  `json:"summary"`
}

// Run judges every object of the bundle against the whole bundle; findings come in the
// order objects were read, deny before warn for each. Pods and pod templates of
// covered namespaces are first labelled, as the mutating webhook would label their Pods, so
// that policies are judged against what will run.
func Run(e *policy.Engine, b *Bundle) Report {
	for _, o := range b.Objects {
		if w, ok := o.(*policy.Workload); ok {
			e.Cover(b.State, w)
		}
	}
	r := Report{Results: []Result{}, Summary: Summary{Documents: b.Documents, Objects: len(b.Objects), Ignored: b.Ignored}}
	for _, o := range b.Objects {
		for _, f := range e.Review(policy.Review{Operation: policy.Audit, Object: o, State: b.State}) {
			r.Results = append(r.Results, Result{Finding: f, Source: b.Sources[o]})
			if f.Action == policy.Deny {
				r.Summary.Deny++
			} else {
				r.Summary.Warn++
			}
		}
	}
	return r
}

// Fails tells whether any finding reaches the action given by --fail-on.
func (r Report) Fails(failOn policy.Action) bool {
	return r.Summary.Deny > 0 || (failOn == policy.Warn && r.Summary.Warn > 0)
}
