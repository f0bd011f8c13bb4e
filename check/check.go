package check

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/products"
)

// Result is a finding and where it was read: the file and document of its object, and the
// line of its field there (of the nearest enclosing field present where it is missing).
type Result struct {
	policy.Finding
	Source
	// Baselined: the finding was there when the baseline was written (--baseline).
	Baselined bool `json:"baselined,omitempty"`
	// objectLine is the line the object starts on.
	objectLine int
}

// Summary counts what a run saw and found.
type Summary struct {
	Documents int `json:"documents"`
	Objects   int `json:"objects"`
	Ignored   int `json:"ignored"`
	Deny      int `json:"deny"`
	Warn      int `json:"warn"`
	// Suppressed counts the findings objects accept (ignore.meshguard.io/<rule>), which
	// fail nothing.
	Suppressed int `json:"suppressed"`
	// Baselined counts the findings of the baseline (--baseline), which fail nothing.
	Baselined int `json:"baselined"`
}

// Report is the outcome of judging a bundle.
type Report struct {
	Results []Result `json:"findings"`
	Summary Summary  `json:"summary"`
}

// Run judges every object of the bundle against the whole bundle; findings come in the
// order objects were read, deny before warn for each. Pods and pod templates of
// covered namespaces read from manifests are first labelled, as the mutating webhook would
// label their Pods, so that policies are judged against what will run; a live bundle's are
// judged as they run.
func Run(e *policy.Engine, b *Bundle) Report {
	if !b.Live {
		for _, o := range b.Objects {
			if w, ok := o.(*policy.Workload); ok {
				e.Cover(b.State, w)
			}
		}
		b.State.Reindex() // policies select by the labels just given
	}
	// Each object is judged on its own against the same state: on every core, the
	// findings then reported in reading order.
	findings := make([][]policy.Finding, len(b.Objects))
	parallel(len(b.Objects), func(i int) {
		findings[i] = e.Review(policy.Review{Operation: policy.Audit, Object: b.Objects[i], State: b.State})
	})
	r := Report{Results: []Result{}, Summary: Summary{Documents: b.Documents, Objects: len(b.Objects), Ignored: b.Ignored}}
	for i, o := range b.Objects {
		for _, f := range findings[i] {
			r.add(Result{Finding: f, Source: b.Sources[o]})
		}
	}
	locateFields(b, r.Results)
	return r
}

// Fails tells whether any finding reaches the action given by --fail-on.
func (r Report) Fails(failOn policy.Action) bool {
	return r.Summary.Deny > 0 || (failOn == policy.Warn && r.Summary.Warn > 0)
}

// Preview judges changes to a live state as admission would judge each when applied (a
// CREATE, or an UPDATE of the live object of the same kind, namespace and name), or when
// deleted; each on its own, against the state as it is.
func Preview(e *policy.Engine, live *policy.Snapshot, changes *Bundle, deleting bool) Report {
	r := Report{Results: []Result{}, Summary: Summary{Documents: changes.Documents, Objects: len(changes.Objects), Ignored: changes.Ignored}}
	for _, o := range changes.Objects {
		old := live.Find(policy.KindOf(o), o.GetNamespace(), o.GetName())
		review := policy.Review{Operation: policy.Create, Object: o, State: live}
		switch {
		case deleting && old == nil:
			continue // nothing to delete
		case deleting:
			review = policy.Review{Operation: policy.Delete, Object: old, OldObject: old, State: live}
		case old != nil:
			review.Operation, review.OldObject = policy.Update, old
		}
		if w, ok := o.(*policy.Workload); ok && review.Operation == policy.Create {
			e.Cover(live, w)
		}
		for _, f := range e.Review(review) {
			r.add(Result{Finding: f, Source: changes.Sources[o]})
		}
	}
	locateFields(changes, r.Results)
	return r
}

// Append adds the findings and counts of another report, of another bundle.
func (r *Report) Append(o Report) {
	for _, res := range o.Results {
		r.add(res)
	}
	r.Summary.Documents += o.Summary.Documents
	r.Summary.Objects += o.Summary.Objects
	r.Summary.Ignored += o.Summary.Ignored
}

// On keeps the findings on workload w and on the policies named: those that bear on a
// request to w (explain) or on what protects it (coverage).
func (r Report) On(w *policy.Workload, policies []products.PolicyRef) []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Object == metav1.Object(w) || slices.Contains(policies, products.PolicyRef{Kind: res.Kind, Namespace: res.Namespace, Name: res.ObjectName}) {
			out = append(out, res)
		}
	}
	return out
}

// In keeps the findings on objects of namespace ns.
func (r Report) In(ns string) Report {
	out := Report{Results: []Result{}, Summary: Summary{Documents: r.Summary.Documents, Objects: r.Summary.Objects, Ignored: r.Summary.Ignored}}
	for _, res := range r.Results {
		if res.Namespace == ns {
			out.add(res)
		}
	}
	return out
}

func (r *Report) add(res Result) {
	r.Results = append(r.Results, res)
	switch {
	case res.Suppressed != nil:
		r.Summary.Suppressed++
	case res.Baselined:
		r.Summary.Baselined++
	case res.Action == policy.Deny:
		r.Summary.Deny++
	default:
		r.Summary.Warn++
	}
}
