package dataplane

import (
	"hash/maphash"
	"maps"

	"github.com/meshguard/meshguard/policy/mesh"
)

// Memo remembers what protects workloads in one state. What protects a workload
// depends only on its namespace and labels, and often on fewer: a sidecar workload's
// protection follows from the policies of its namespace and the root namespace that select
// it, so the workloads of a namespace the same policies select share one, whatever else
// their labels say (a mesh-wide policy's review asks of every Pod of the cluster, each with
// its own pod-template-hash). Other workloads share one per label set.
type Memo struct {
	state      mesh.State
	root       string
	seed       maphash.Seed
	byPod      map[*mesh.Workload]Facts
	byLabels   map[labelsKey]*labelledProtection
	namespaces map[string]*candidates
	// atRoot are the root namespace's policies, candidates in every namespace.
	atRoot *namespacePolicies
	// last are the candidates last asked for.
	last     *candidates
	openings map[openingKey]Request
}

// Facts are what a review has worked out of one workload: whether it is in ambient
// mode, and its protection once asked.
type Facts struct {
	Ambient    bool
	Protection *Protection
}

type labelsKey struct {
	namespace string
	virtual   bool
	hash      uint64 // labelsHash; equal hashes are told apart by the labels themselves
}

// labelledProtection is the protection of one label set; next is another label set
// whose labelsKey is the same.
type labelledProtection struct {
	labels map[string]string
	Protection
	next *labelledProtection
}

// labelsHash is the same for equal label sets, in whatever order a map gives them.
func labelsHash(seed maphash.Seed, labels map[string]string) uint64 {
	var h uint64
	for k, v := range labels {
		h += maphash.String(seed, k) ^ maphash.String(seed, v)*0x9e3779b97f4a7c15
	}
	return h
}

// Facts returns the facts of w: what the memo knows of it, completed, and not kept.
func (m *Memo) Facts(w *mesh.Workload) Facts {
	f, known := m.byPod[w]
	return m.complete(w, f, known)
}

// Protection returns what guards w, kept for the review.
func (m *Memo) Protection(w *mesh.Workload) Protection {
	f, known := m.byPod[w]
	if !known || f.Protection == nil {
		f = m.complete(w, f, known)
		m.byPod[w] = f
	}
	return *f.Protection
}

// complete works out what f, the facts of w, lacks: all of them unless known.
func (m *Memo) complete(w *mesh.Workload, f Facts, known bool) Facts {
	if !known {
		f.Ambient = m.ambient(w)
	}
	if f.Protection == nil {
		f.Protection = m.protectionBy(w, f.Ambient)
	}
	return f
}

// ambient tells whether w is in ambient mode in m's state: a real workload's, from what it
// keeps. A virtual workload's needs only its namespace's labels, not its policies
// compiled: it is protected by its label set (protectionByLabels).
func (m *Memo) ambient(w *mesh.Workload) bool {
	if w.Virtual {
		return m.candidatesIn(w.Namespace).inAmbient(w)
	}
	return m.candidatesOf(w).keptFactsOf(w, m.root).ambient
}

// protectionBy finds w's protection among those m knows, or works it out: a sidecar
// workload's by its class, the others' by their label set.
func (m *Memo) protectionBy(w *mesh.Workload, ambient bool) *Protection {
	if !w.Virtual && !ambient {
		ns := m.candidatesOf(w)
		if k, ok := ns.class(w, m.root, ns.keptFactsOf(w, m.root)); ok {
			p := ns.classProtection(k)
			if p == nil {
				p = ns.Protection(m.state, m.root, w, k, m.openings)
				ns.addClass(k, p)
			}
			return p
		}
	}
	return m.protectionByLabels(w)
}

// protectionByLabels finds w's protection among those m knows of its label set, or works
// it out.
func (m *Memo) protectionByLabels(w *mesh.Workload) *Protection {
	k := labelsKey{w.Namespace, w.Virtual, labelsHash(m.seed, w.Labels)}
	for known := m.byLabels[k]; known != nil; known = known.next {
		if maps.Equal(known.labels, w.Labels) {
			return &known.Protection
		}
	}
	e := &labelledProtection{labels: w.Labels, Protection: protectionOf(m.state, m.root, w, m.openings), next: m.byLabels[k]}
	m.byLabels[k] = e
	return &e.Protection
}

// InAmbient tells whether w is in ambient mode in m's state, kept for the review.
func (m *Memo) InAmbient(w *mesh.Workload) bool {
	if f, known := m.byPod[w]; known {
		return f.Ambient
	}
	ambient := m.ambient(w)
	m.byPod[w] = Facts{Ambient: ambient}
	return ambient
}

// NewMemo is a memo of state st, whose root namespace is root; seed hashes label sets, one
// per review.
func NewMemo(st mesh.State, root string, seed maphash.Seed) *Memo {
	return &Memo{state: st, root: root, seed: seed, byPod: map[*mesh.Workload]Facts{},
		byLabels: map[labelsKey]*labelledProtection{}, namespaces: map[string]*candidates{}, openings: map[openingKey]Request{}}
}

// candidatesOf returns the candidates of w's namespace, their policies compiled.
func (m *Memo) candidatesOf(w *mesh.Workload) *candidates {
	cands := m.candidatesIn(NamespaceOf(w))
	if cands.own == nil {
		cands.own = compiledPolicies(m.state, cands.namespace)
		if cands.namespace != m.root {
			if m.atRoot == nil {
				m.atRoot = compiledPolicies(m.state, m.root)
			}
			cands.root = m.atRoot
		}
	}
	return cands
}

// candidatesIn returns the candidates of a namespace, its labels read on first use. Their
// policies are compiled by candidatesOf, for the real workloads that need them.
func (m *Memo) candidatesIn(ns string) *candidates {
	// A mesh-wide selection lists the workloads of a namespace together.
	if m.last != nil && m.last.namespace == ns {
		return m.last
	}
	if cands, ok := m.namespaces[ns]; ok {
		m.last = cands
		return cands
	}
	labels := m.state.Settings(ns).NamespaceLabels
	cands := &candidates{namespace: ns, namespaceLabels: labels, enrolment: enrolmentOf(labels)}
	m.namespaces[ns] = cands
	m.last = cands
	return cands
}

// State is the state m remembers of.
func (m *Memo) State() mesh.State { return m.state }
