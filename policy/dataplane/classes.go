package dataplane

import (
	"math/bits"
	"slices"
	"sync"

	"github.com/meshguard/meshguard/policy/mesh"
)

// A sidecar workload's protection follows from which policies select it: the
// RequestAuthentications and AuthorizationPolicies of its namespace and the root namespace,
// and its namespace's PeerAuthentications with a selector (mesh.MTLSMode). Workloads of a
// namespace the same policies select share one protection, whatever else their labels
// say. A mesh-wide policy's review asks of every Pod of the cluster, each with its own
// pod-template-hash; it then works per namespace and set of policies, and, where the
// state keeps its namespaces between reviews (the webhook's views), compiles only the
// namespaces whose policies changed since.

// selectors are the scopes of a list of policies compiled for selection: the label keys
// their selectors name, once each, and what each selector asks of them. A workload's labels
// are then each looked up once, however many policies select by them.
type selectors struct {
	scopes []mesh.Scope
	keys   []string
	// wants[i] is what scopes[i] asks; nil for a scope asked with Applies (targetRefs).
	wants [][]labelWant
}

// labelWant is a selector's value for the label keys[key].
type labelWant struct {
	key   int
	value string
}

// maxSelecting is how many policies, and label keys, selecting tells apart: a bit each.
const maxSelecting = 64

func (s *selectors) add(sc mesh.Scope) {
	s.scopes = append(s.scopes, sc)
	if len(sc.TargetRefs) > 0 {
		s.wants = append(s.wants, nil)
		return
	}
	wants := make([]labelWant, 0, len(sc.Labels))
	for k, v := range sc.Labels {
		at := slices.Index(s.keys, k)
		if at < 0 {
			at = len(s.keys)
			s.keys = append(s.keys, k)
		}
		wants = append(wants, labelWant{at, v})
	}
	s.wants = append(s.wants, wants)
}

// selecting returns which scopes apply to w, a bit each; false when there are too many to
// tell.
func (s *selectors) selecting(w *mesh.Workload, root string) (uint64, bool) {
	if len(s.scopes) > maxSelecting || len(s.keys) > maxSelecting {
		return 0, false
	}
	var values [maxSelecting]string
	var present uint64
	for i, k := range s.keys {
		if v, ok := w.Labels[k]; ok {
			values[i], present = v, present|1<<i
		}
	}
	var selected uint64
	for i, wants := range s.wants {
		applies := wants != nil || s.scopes[i].Applies(w, root)
		for _, want := range wants {
			if present&(1<<want.key) == 0 || values[want.key] != want.value {
				applies = false
				break
			}
		}
		if applies {
			selected |= 1 << i
		}
	}
	return selected, true
}

// namespacePolicies are the policies of one namespace that may protect workloads, compiled
// for selection: its RequestAuthentications, then its AuthorizationPolicies, then its
// PeerAuthentications with a selector. They are immutable once compiled, and shared by the
// reviews that read the same policies of the namespace (PolicyMemo).
type namespacePolicies struct {
	ras []*mesh.RequestAuthentication
	aps []*mesh.AuthorizationPolicy
	selectors
	// kept: a memo keeps them, under the name of their namespace, so that workloads may
	// keep what was worked out against them (keptFacts).
	kept      bool
	namespace string
	// openings are the tokenless openings of sets of these AuthorizationPolicies alone, by
	// keptOpening.
	openings sync.Map
}

// keptOpening names a set of a namespace's AuthorizationPolicies (a bit each, as
// selecting gives them) and whether callers without mTLS reach the workload.
type keptOpening struct {
	aps       uint64
	plaintext bool
}

func compileNamespace(ras []*mesh.RequestAuthentication, aps []*mesh.AuthorizationPolicy, pas []*mesh.PeerAuthentication) *namespacePolicies {
	n := &namespacePolicies{ras: ras, aps: aps}
	// Room for every scope at once: a namespace's policies are compiled on most writes.
	room := len(ras) + len(aps) + len(pas)
	n.scopes, n.wants = make([]mesh.Scope, 0, room), make([][]labelWant, 0, room)
	for _, ra := range ras {
		n.add(mesh.ScopeOf(ra))
	}
	for _, ap := range aps {
		n.add(mesh.ScopeOf(ap))
	}
	for _, pa := range pas {
		if sc := mesh.ScopeOf(pa); len(sc.Labels) > 0 {
			n.add(sc)
		}
	}
	return n
}

// picked returns the policies of list whose bits (from offset on) are set in selected.
func picked[T any](out, list []T, selected uint64, offset int) []T {
	for i, o := range list {
		if selected&(1<<(offset+i)) != 0 {
			out = append(out, o)
		}
	}
	return out
}

// opening returns the tokenless opening of aps, the AuthorizationPolicies of n that the
// bits of selected name, evaluating it the first time it is asked.
func (n *namespacePolicies) opening(selected uint64, plaintext bool, aps []*mesh.AuthorizationPolicy) Request {
	key := keptOpening{selected >> len(n.ras) & (1<<len(n.aps) - 1), plaintext}
	if witness, ok := n.openings.Load(key); ok {
		return witness.(Request)
	}
	witness := EnforcementOf(aps, plaintext).TokenlessOpening()
	n.openings.Store(key, witness)
	return witness
}

// compiledPolicies returns the policies of namespace ns in st, compiled, from st's memo
// where it keeps one.
func compiledPolicies(st mesh.State, ns string) *namespacePolicies {
	var memo *mesh.Memo
	if m, ok := st.(mesh.Memos); ok {
		memo = m.PolicyMemo(ns)
	}
	if memo != nil {
		if n, ok := memo.Load(ns); ok {
			return n.(*namespacePolicies)
		}
	}
	n := compileNamespace(st.RequestAuthentications(ns), st.AuthorizationPolicies(ns), st.PeerAuthentications(ns))
	if memo != nil {
		n.namespace, n.kept = ns, true
		memo.Store(ns, n)
	}
	return n
}

// candidates are what may protect the sidecar workloads of one namespace, in one state:
// the root namespace's policies and its own, and its labels (ambient enrolment).
type candidates struct {
	namespace       string
	namespaceLabels map[string]string
	enrolment       enrolment
	// root and own are compiled by Memo.candidatesOf, for the namespace's real workloads;
	// root is nil in the root namespace.
	root, own *namespacePolicies
	// mtls is the namespace's mTLS mode, for its workloads no PeerAuthentication with a
	// selector applies to.
	mtls mtlsOnce
	// classes are the classes of the namespace's sidecar workloads found so far.
	classes     []class
	moreClasses map[classKey]*Protection
}

// enrolment is what of a namespace's labels decides whether its workloads are enrolled
// in ambient mode (mesh.EnrolledInAmbient).
type enrolment struct{ mode, injection, revision string }

func enrolmentOf(namespaceLabels map[string]string) enrolment {
	return enrolment{namespaceLabels[mesh.DataplaneModeLabel], namespaceLabels[mesh.InjectionLabel], namespaceLabels[mesh.RevisionLabel]}
}

// keptFacts are what only a workload's labels and its namespace's own policies and labels
// decide: which of those policies select it, and whether it is enrolled in ambient mode.
// A workload keeps them while they hold (Workload.Memo): its labels never change (a Pod's
// change is another object, Cover resets them), and they name the policies and labels
// they were worked out against.
type keptFacts struct {
	policies  *namespacePolicies
	enrolment enrolment
	namespace string
	own       uint64
	ownOK     bool
	ambient   bool
}

// NamespaceOf is w's namespace, read from its kept facts when it has some: the name there is
// its namespace's candidates', shared by its workloads, and asking it of 100,000 Pods
// does not read their metadata.
func NamespaceOf(w *mesh.Workload) string {
	if k := keptFactsIn(w); k != nil {
		return k.namespace
	}
	return w.Namespace
}

// ForgetFacts drops the facts w keeps: they were worked out from labels it no longer has.
func ForgetFacts(w *mesh.Workload) { w.Memo.Store((*keptFacts)(nil)) }

// keptFactsIn are the facts w keeps (Workload.Memo), or nil.
func keptFactsIn(w *mesh.Workload) *keptFacts {
	k, _ := w.Memo.Load().(*keptFacts)
	return k
}

// keptFactsOf returns the kept facts of w, working them out if they are missing or were
// worked out against other policies or labels of its namespace.
func (c *candidates) keptFactsOf(w *mesh.Workload, root string) *keptFacts {
	if k := keptFactsIn(w); k != nil && k.policies == c.own && k.enrolment == c.enrolment {
		return k
	}
	k := &keptFacts{policies: c.own, enrolment: c.enrolment, namespace: c.namespace, ambient: c.inAmbient(w)}
	k.own, k.ownOK = c.own.selecting(w, root)
	if c.own.kept {
		w.Memo.Store(k)
	}
	return k
}

// classKey names the sidecar workloads of a namespace that the same policies select: the
// bits selecting gives of the root namespace's policies and of the namespace's own.
type classKey struct{ root, own uint64 }

// maxListedClasses is how many classes of a namespace are looked up in a list, faster than
// hashing for the few most namespaces have; the others are in a map.
const maxListedClasses = 16

// classProtection returns the protection of class k of the namespace, or nil.
func (c *candidates) classProtection(k classKey) *Protection {
	for _, known := range c.classes {
		if known.key == k {
			return known.Protection
		}
	}
	return c.moreClasses[k]
}

func (c *candidates) addClass(k classKey, p *Protection) {
	if len(c.classes) < maxListedClasses {
		c.classes = append(c.classes, class{k, p})
		return
	}
	if c.moreClasses == nil {
		c.moreClasses = map[classKey]*Protection{}
	}
	c.moreClasses[k] = p
}

// class is a class of a namespace's sidecar workloads, and their protection.
type class struct {
	key        classKey
	Protection *Protection
}

// class returns the key of the class of w, whose kept facts are k; false when there are
// too many policies to tell.
func (c *candidates) class(w *mesh.Workload, root string, k *keptFacts) (classKey, bool) {
	key := classKey{own: k.own}
	if c.root == nil {
		return key, k.ownOK
	}
	var rootOK bool
	key.root, rootOK = c.root.selecting(w, root)
	return key, rootOK && k.ownOK
}

func (c *candidates) inAmbient(w *mesh.Workload) bool {
	return !w.HostNetwork && mesh.EnrolledInAmbient(c.namespaceLabels, w)
}

// protection is the protection of the sidecar workloads of class k, w one of them:
// protectionOf's, without asking every policy of each workload.
func (c *candidates) Protection(st mesh.State, root string, w *mesh.Workload, k classKey, openings map[openingKey]Request) *Protection {
	// One allocation for the protection and its opening, one for each list of policies.
	both := &struct {
		Protection
		opening
	}{opening: opening{st: st, root: root, w: w, byPolicies: openings}}
	p := &both.Protection
	p.opening = &both.opening
	room := bits.OnesCount64(k.root) + bits.OnesCount64(k.own)
	p.RAs, p.APs = make([]*mesh.RequestAuthentication, 0, room), make([]*mesh.AuthorizationPolicy, 0, room)
	if c.root != nil {
		p.RAs = picked(p.RAs, c.root.ras, k.root, 0)
		p.APs = picked(p.APs, c.root.aps, k.root, len(c.root.ras))
	}
	rootAPs := len(p.APs)
	p.RAs = picked(p.RAs, c.own.ras, k.own, 0)
	p.APs = picked(p.APs, c.own.aps, k.own, len(c.own.ras))
	if k.own>>(len(c.own.ras)+len(c.own.aps)) == 0 {
		p.opening.namespaceMTLS = &c.mtls
	}
	if rootAPs == 0 {
		// The namespace's own AuthorizationPolicies alone decide: what they admit is kept
		// with them.
		p.opening.kept, p.opening.keptAPs = c.own, k.own
	}
	return p
}
