package policy

import (
	"fmt"
	"hash/maphash"
	"iter"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
)

// Review is a change to judge. Offline, Operation is Audit and Object an object of the
// bundle; at admission, Object is the new object (the old one on DELETE) and OldObject the
// old one on UPDATE and DELETE. State is the world before the change.
type Review struct {
	Operation Operation
	Object    metav1.Object
	OldObject metav1.Object
	State     State
	// Done, when closed, stops the review: the rules not yet run are skipped, and what was
	// found is returned. The caller, which closed it, knows the verdict is incomplete.
	Done <-chan struct{}
}

// Context is what a rule's check sees.
type Context struct {
	Operation Operation
	// Object is under review: the new object, or the one being deleted.
	Object metav1.Object
	// OldObject is the object as it is now, on UPDATE and DELETE.
	OldObject metav1.Object
	// State is the world after the change; Before, the world before it (nil offline, where
	// there is no "before").
	State  State
	Before State
	// Settings are the guardrails governing Object's namespace, and Istio's root namespace.
	Settings Settings

	// Several rules ask the same questions of one review: answer each once.
	selections map[metav1.Object]*selection
	// protectionMemos, one per state asked about (after the change, and before it).
	protectionMemos []*dataplane.Memo
	seed            maphash.Seed
	// jwks holds what inspectJWKS found of each inline key set: three rules ask.
	jwks map[string][]jwksProblem
	done <-chan struct{}
}

// inspectJWKS is inspectJWKS, once per key set and review.
func (c *Context) inspectJWKS(text string) []jwksProblem {
	if p, ok := c.jwks[text]; ok {
		return p
	}
	if c.jwks == nil {
		c.jwks = map[string][]jwksProblem{}
	}
	p := inspectJWKS(text)
	c.jwks[text] = p
	return p
}

// stopped tells whether the review has run out of time: a rule looping over a list of
// unbounded length asks, and stops.
func (c *Context) stopped() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// selection is what a policy applies to after the change, and what the review has worked
// out of each workload, in the same order once asked: the rules that ask of every
// workload a mesh-wide policy selects then work each out once, without looking it up.
type selection struct {
	workloads []*Workload
	facts     []workloadFacts
}

// selectionOf returns the selection of a policy (its virtual workload when none is known).
func (c *Context) selectionOf(o metav1.Object) *selection {
	if s, ok := c.selections[o]; ok {
		return s
	}
	if c.selections == nil {
		c.selections = map[metav1.Object]*selection{}
	}
	s := &selection{workloads: mesh.ScopeOf(o).Workloads(c.State, c.Settings.Root)}
	c.selections[o] = s
	return s
}

// workloadsOf returns the workloads a policy applies to after the change (its virtual
// workload when none is known).
func (c *Context) workloadsOf(o metav1.Object) []*Workload { return c.selectionOf(o).workloads }

// eachWorkload yields the workloads a policy applies to after the change, with their facts.
func (c *Context) eachWorkload(o metav1.Object) iter.Seq2[*Workload, workloadFacts] {
	return func(yield func(*Workload, workloadFacts) bool) {
		s := c.selectionOf(o)
		if s.facts == nil {
			m := c.protectionMemoOf(c.State)
			s.facts = make([]workloadFacts, len(s.workloads))
			for i, w := range s.workloads {
				s.facts[i] = m.Facts(w)
			}
		}
		for i, w := range s.workloads {
			if !yield(w, s.facts[i]) {
				return
			}
		}
	}
}

// workloadsWhere returns the workloads a policy applies to after the change whose facts
// pass keep.
func (c *Context) workloadsWhere(o metav1.Object, keep func(workloadFacts) bool) []*Workload {
	var out []*Workload
	for w, f := range c.eachWorkload(o) {
		if keep(f) {
			out = append(out, w)
		}
	}
	return out
}

// protection returns what guards workload w in state st.
func (c *Context) protection(st State, w *Workload) protection {
	return c.protectionMemoOf(st).Protection(w)
}

// inAmbient is inAmbient, asked once per workload and review.
func (c *Context) inAmbient(w *Workload) bool { return c.protectionMemoOf(c.State).InAmbient(w) }

// ambientOf returns the workloads of ws that ztunnel intercepts.
func (c *Context) ambientOf(ws []*Workload) []*Workload { return mesh.WorkloadsWhere(ws, c.inAmbient) }

func (c *Context) protectionMemoOf(st State) *dataplane.Memo {
	for _, m := range c.protectionMemos {
		if m.State() == st {
			return m
		}
	}
	if c.protectionMemos == nil {
		c.seed = maphash.MakeSeed()
	}
	m := dataplane.NewMemo(st, c.Settings.Root, c.seed)
	c.protectionMemos = append(c.protectionMemos, m)
	return m
}

// Engine judges reviews against its catalog of rules.
type Engine struct {
	rules []Rule
}

// NewEngine returns an engine with the full catalog.
func NewEngine() *Engine {
	return &Engine{rules: Catalog()}
}

// Rules returns the catalog, in ID order.
func (e *Engine) Rules() []Rule { return e.rules }

// Rule returns the rule with the given ID.
func (e *Engine) Rule(id string) (Rule, bool) {
	i := slices.IndexFunc(e.rules, func(r Rule) bool { return r.ID == id })
	if i < 0 {
		return Rule{}, false
	}
	return e.rules[i], true
}

// Review judges one change and returns its findings, deny before warn, in catalog order.
func (e *Engine) Review(r Review) []Finding {
	c := e.context(r)
	kind, judged := KindOf(r.Object), judgedAs(r.Object)
	var out []Finding
	for _, rule := range e.rules {
		if !slices.Contains(rule.Kinds, judged) || (r.Operation == Delete && !rule.OnDelete) {
			continue
		}
		if c.stopped() {
			break
		}
		override, overridden := c.Settings.Actions[rule.ID]
		if overridden && override == Off {
			continue
		}
		if rule.Check == nil {
			continue
		}
		for _, f := range rule.Check(c) {
			f.Rule, f.Name = rule.ID, rule.Name
			switch {
			case overridden:
				f.Action = override
			case f.Action == "":
				f.Action = rule.Default
			}
			if f.Action == Off {
				continue
			}
			f.Kind, f.Namespace, f.ObjectName, f.Object = kind, r.Object.GetNamespace(), r.Object.GetName(), r.Object
			suppress(&f, r.Object, c.Settings)
			out = append(out, f)
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int { return actionRank(a.Action) - actionRank(b.Action) })
	return out
}

// suppress marks a finding its object accepts (SuppressAnnotationPrefix), or says in its
// fix why the annotation does not suppress it.
func suppress(f *Finding, o metav1.Object, s Settings) {
	annotation := SuppressAnnotationPrefix + f.Rule
	reason, asked := o.GetAnnotations()[annotation]
	switch {
	case !asked:
	case strings.TrimSpace(reason) == "":
		f.Fix += fmt.Sprintf(" (%s suppresses this finding only with a reason as its value)", annotation)
	case f.Action == Deny && !slices.Contains(s.Suppressible, f.Rule):
		f.Fix += fmt.Sprintf(" (%s suppresses a deny finding only where a MeshGuardrail names %s in spec.suppressible)", annotation, f.Rule)
	default:
		f.Suppressed = &Suppression{Reason: reason}
	}
}

// judgedAs is the kind whose rules judge o: every workload, Pod or pod template, is judged
// by the Pod rules.
func judgedAs(o metav1.Object) string {
	if _, ok := o.(*Workload); ok {
		return KindPod
	}
	return KindOf(o)
}

func actionRank(a Action) int {
	if a == Deny {
		return 0
	}
	return 1
}

// context builds what rules see: the state after the change, and the guardrails.
func (e *Engine) context(r Review) *Context {
	c := &Context{Operation: r.Operation, Object: r.Object, OldObject: r.OldObject, State: r.State, done: r.Done}
	switch r.Operation {
	case Create, Update:
		c.Before, c.State = r.State, mesh.WithChange(r.State, r.OldObject, r.Object)
	case Delete:
		c.Before, c.State = r.State, mesh.WithChange(r.State, r.Object, nil)
	}
	c.Settings = c.State.Settings(r.Object.GetNamespace())
	return c
}

// Labelling is what a labelling rule adds to a workload.
type Labelling struct {
	Rule string
	// Labels are the labels the workload lacks; Guardrails, those that ask for them.
	Labels     map[string]string
	Guardrails []string
}

// labeller returns the labelling rule in force under s (any action but off), or nil.
func (e *Engine) labeller(s Settings) *Rule {
	for i, r := range e.rules {
		if r.Label != nil && s.Actions[r.ID] != Off {
			return &e.rules[i]
		}
	}
	return nil
}

// LabelsPods tells whether new Pods of a namespace may be given labels, before any Pod
// is read: most namespaces ask for none.
func (e *Engine) LabelsPods(st State, namespace string) bool {
	s := st.Settings(namespace)
	return s.Coverage != nil && e.labeller(s) != nil
}

// CoverageLabels returns what a new Pod (or, offline, a pod template) is to be labelled
// with, or nil: the mutating side of meshguard.
func (e *Engine) CoverageLabels(st State, w *Workload) *Labelling {
	s := st.Settings(w.Namespace)
	r := e.labeller(s)
	if r == nil {
		return nil
	}
	missing, guardrails := r.Label(s, w)
	if missing == nil {
		return nil
	}
	return &Labelling{Rule: r.ID, Labels: missing, Guardrails: guardrails}
}

// Cover labels a workload in place as admission would, returning whether it changed.
func (e *Engine) Cover(st State, w *Workload) bool {
	l := e.CoverageLabels(st, w)
	if l == nil {
		return false
	}
	meta := *w.ObjectMeta // the metadata may be a cache's
	w.ObjectMeta = &meta
	w.Labels = maps.Clone(w.Labels)
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	maps.Copy(w.Labels, l.Labels)
	w.Annotations = maps.Clone(w.Annotations)
	if w.Annotations == nil {
		w.Annotations = map[string]string{}
	}
	w.Annotations[CoveredByAnnotation] = strings.Join(l.Guardrails, ",")
	dataplane.ForgetFacts(w)
	return true
}
