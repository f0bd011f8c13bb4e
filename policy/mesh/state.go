package mesh

import (
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// State is the world a change is judged against: the live cluster behind the webhook's
// caches, or a bundle of manifests. Lists are per namespace so that judging one object costs
// the policies of its namespace and the root namespace, not the whole cluster. Policy lists
// come oldest first, as Istio breaks ties by age.
type State interface {
	RequestAuthentications(namespace string) []*RequestAuthentication
	AuthorizationPolicies(namespace string) []*AuthorizationPolicy
	PeerAuthentications(namespace string) []*PeerAuthentication
	// Workloads returns the workloads of a namespace ("" for every namespace) whose labels
	// include matchLabels (nil for all of them).
	Workloads(namespace string, matchLabels map[string]string) []*Workload
	// KnowsWorkloads is false when the state cannot tell that a selector matches nothing: a
	// bundle holding no Pods or pod templates at all.
	KnowsWorkloads() bool
	Services(namespace string) []*corev1.Service
	// Gateways are the Gateway API gateways of a namespace: none where the Gateway API is
	// not installed.
	Gateways(namespace string) []*Gateway
	// KnowsGateways is false when the state cannot tell that a Gateway does not exist: a
	// bundle holding no Gateway at all.
	KnowsGateways() bool
	// GatewayClass returns the Gateway API class of a name, or nil.
	GatewayClass(name string) *GatewayClass
	// ServiceEntries are the ServiceEntries of a namespace.
	ServiceEntries(namespace string) []*ServiceEntry
	// HTTPRoutes are the Gateway API HTTPRoutes of a namespace.
	HTTPRoutes(namespace string) []*HTTPRoute
	// Settings are the guardrails in force in a namespace, merged (MergeGuardrails). Every
	// review asks for them, so a live state keeps them between reviews.
	Settings(namespace string) Settings
	// IstiodVersions are the versions of the running Istio control planes, where known.
	IstiodVersions() []string
	// NamespaceNames are the names of the cluster's namespaces (offline, those the bundle
	// names), in order.
	NamespaceNames() []string
}

// Snapshot is an in-memory State: a bundle offline, or test input.
type Snapshot struct {
	RAs        map[string][]*RequestAuthentication
	APs        map[string][]*AuthorizationPolicy
	PAs        map[string][]*PeerAuthentication
	Pods       map[string][]*Workload
	Svcs       map[string][]*corev1.Service
	GWs        map[string][]*Gateway
	GWClasses  map[string]*GatewayClass
	SEs        map[string][]*ServiceEntry
	Routes     map[string][]*HTTPRoute
	Namespaces map[string]map[string]string
	Rails      []*MeshGuardrail
	Istiod     []string
	// Root is Istio's root namespace as the input states it (--root-namespace, else the
	// namespace of istiod's Deployment), where no guardrail names one; "" for istio-system.
	Root string
	// podsByLabel indexes each namespace's workloads by label: a selector's candidates are
	// the workloads carrying one of its labels, not the whole namespace.
	podsByLabel map[string]map[labelPair][]*Workload
	// memo keeps what reviews compile of the snapshot's policies.
	memo *Memo
}

type labelPair struct{ key, value string }

// NewSnapshot returns an empty snapshot. Its maps are made when first added to: the
// webhook keeps a snapshot per namespace and part, most of them holding one kind.
func NewSnapshot() *Snapshot { return &Snapshot{memo: &Memo{}} }

// WithPolicies returns a copy of s whose policies of namespace ns are these. The copy
// shares with s what it does not change: neither is added to afterwards.
func (s *Snapshot) WithPolicies(ns string, ras []*RequestAuthentication, aps []*AuthorizationPolicy, pas []*PeerAuthentication) *Snapshot {
	out := *s
	out.RAs, out.APs, out.PAs = withEntry(s.RAs, ns, ras), withEntry(s.APs, ns, aps), withEntry(s.PAs, ns, pas)
	out.memo = &Memo{}
	return &out
}

// withEntry returns a copy of m with the entry of key k set to v; m itself where v is
// already its list there (an overlay most often changes one kind).
func withEntry[T any](m map[string][]T, k string, v []T) map[string][]T {
	if old, ok := m[k]; ok && len(old) == len(v) && (len(v) == 0 || &old[0] == &v[0]) {
		return m
	}
	out := make(map[string][]T, len(m)+1)
	maps.Copy(out, m)
	out[k] = v
	return out
}

// appendTo appends o to the list of namespace ns in *m, making the map if need be.
func appendTo[T any](m *map[string][]T, ns string, o T) {
	if *m == nil {
		*m = map[string][]T{}
	}
	(*m)[ns] = append((*m)[ns], o)
}

// PolicyMemo is the memo of the snapshot's policies: reviews against one snapshot share
// what they compile of them.
func (s *Snapshot) PolicyMemo(string) *Memo { return s.memo }

// Add puts an object into the snapshot, after those already there (so: newer).
// It reports false for objects the engine does not use.
func (s *Snapshot) Add(o metav1.Object) bool {
	if Terminating(o) {
		return true
	}
	ns := o.GetNamespace()
	switch o.(type) {
	case *RequestAuthentication, *AuthorizationPolicy, *PeerAuthentication:
		s.memo.Forget(ns)
	}
	switch o := o.(type) {
	case *RequestAuthentication:
		appendTo(&s.RAs, ns, o)
	case *AuthorizationPolicy:
		appendTo(&s.APs, ns, o)
	case *PeerAuthentication:
		appendTo(&s.PAs, ns, o)
	case *Workload:
		s.AddWorkloads(ns, o)
	case *corev1.Service:
		appendTo(&s.Svcs, ns, o)
	case *Gateway:
		appendTo(&s.GWs, ns, o)
	case *GatewayClass:
		if s.GWClasses == nil {
			s.GWClasses = map[string]*GatewayClass{}
		}
		s.GWClasses[o.Name] = o
	case *ServiceEntry:
		appendTo(&s.SEs, ns, o)
	case *HTTPRoute:
		appendTo(&s.Routes, ns, o)
	case *corev1.Namespace:
		if s.Namespaces == nil {
			s.Namespaces = map[string]map[string]string{}
		}
		s.Namespaces[o.Name] = o.Labels
	case *MeshGuardrail:
		s.Rails = append(s.Rails, o)
	default:
		return false
	}
	return true
}

// AddWorkloads puts workloads of namespace ns into the snapshot, after those already
// there. It indexes them by label at once: a namespace's view of its Pods is built in one
// go, and its index in three allocations rather than one per label.
func (s *Snapshot) AddWorkloads(ns string, ws ...*Workload) {
	if s.Pods == nil {
		s.Pods, s.podsByLabel = map[string][]*Workload{}, map[string]map[labelPair][]*Workload{}
	}
	s.Pods[ns] = append(s.Pods[ns], ws...)
	index := s.podsByLabel[ns]
	if index == nil {
		index = make(map[labelPair][]*Workload, len(ws))
		s.podsByLabel[ns] = index
	}
	added := make(map[labelPair]int, len(ws))
	for _, w := range ws {
		for k, v := range w.Labels {
			added[labelPair{k, v}]++
		}
	}
	room := 0
	for pair, n := range added {
		room += len(index[pair]) + n
	}
	backing := make([]*Workload, 0, room)
	for pair, n := range added {
		carrying := index[pair]
		backing = append(backing, carrying...)
		index[pair] = backing[len(backing)-len(carrying) : len(backing) : len(backing)+n]
		backing = backing[:len(backing)+n]
	}
	for _, w := range ws {
		for k, v := range w.Labels {
			index[labelPair{k, v}] = append(index[labelPair{k, v}], w)
		}
	}
}

// Reindex indexes the snapshot's workloads by label anew, after their labels changed in
// place: Engine.Cover labels pod templates as admission would label their Pods.
func (s *Snapshot) Reindex() {
	pods := s.Pods
	s.Pods, s.podsByLabel = nil, nil
	for ns, ws := range pods {
		s.AddWorkloads(ns, ws...)
	}
}

// Find returns the object of a kind, namespace and name the snapshot holds, or nil: a
// security policy, a Service, ServiceEntry, Gateway or HTTPRoute, or a Pod.
func (s *Snapshot) Find(kind, ns, name string) metav1.Object {
	switch kind {
	case KindRequestAuthentication:
		return named(s.RAs[ns], name)
	case KindAuthorizationPolicy:
		return named(s.APs[ns], name)
	case KindPeerAuthentication:
		return named(s.PAs[ns], name)
	case KindService:
		return named(s.Svcs[ns], name)
	case KindServiceEntry:
		return named(s.SEs[ns], name)
	case KindGateway:
		return named(s.GWs[ns], name)
	case KindHTTPRoute:
		return named(s.Routes[ns], name)
	case KindPod:
		return named(s.Pods[ns], name)
	}
	return nil
}

func named[T metav1.Object](objects []T, name string) metav1.Object {
	for _, o := range objects {
		if o.GetName() == name {
			return o
		}
	}
	return nil
}

func (s *Snapshot) RequestAuthentications(ns string) []*RequestAuthentication { return s.RAs[ns] }
func (s *Snapshot) AuthorizationPolicies(ns string) []*AuthorizationPolicy    { return s.APs[ns] }
func (s *Snapshot) PeerAuthentications(ns string) []*PeerAuthentication       { return s.PAs[ns] }
func (s *Snapshot) Services(ns string) []*corev1.Service                      { return s.Svcs[ns] }
func (s *Snapshot) Gateways(ns string) []*Gateway                             { return s.GWs[ns] }
func (s *Snapshot) IstiodVersions() []string                                  { return s.Istiod }
func (s *Snapshot) KnowsWorkloads() bool                                      { return len(s.Pods) > 0 }

// NamespaceNames are the namespaces the snapshot names: by a Namespace object, or as the
// namespace of an object.
func (s *Snapshot) NamespaceNames() []string {
	seen := map[string]bool{}
	for ns := range s.Namespaces {
		seen[ns] = true
	}
	addKeys(seen, s.RAs)
	addKeys(seen, s.APs)
	addKeys(seen, s.PAs)
	addKeys(seen, s.Pods)
	addKeys(seen, s.Svcs)
	addKeys(seen, s.GWs)
	addKeys(seen, s.SEs)
	addKeys(seen, s.Routes)
	return SortedKeys(seen)
}

func addKeys[T any](seen map[string]bool, m map[string][]T) {
	for k := range m {
		seen[k] = true
	}
}

func (s *Snapshot) KnowsGateways() bool                      { return len(s.GWs) > 0 }
func (s *Snapshot) GatewayClass(name string) *GatewayClass   { return s.GWClasses[name] }
func (s *Snapshot) ServiceEntries(ns string) []*ServiceEntry { return s.SEs[ns] }
func (s *Snapshot) HTTPRoutes(ns string) []*HTTPRoute        { return s.Routes[ns] }

// Workloads returns the selected workloads in a list of the caller's own.
func (s *Snapshot) Workloads(ns string, matchLabels map[string]string) []*Workload {
	if ns != "" {
		selected, shared := s.Selected(ns, matchLabels)
		if shared {
			return slices.Clone(selected)
		}
		return selected
	}
	var out []*Workload
	for _, n := range SortedKeys(s.Pods) {
		selected, _ := s.Selected(n, matchLabels)
		out = append(out, selected...)
	}
	return out
}

// Selected returns the workloads of namespace ns whose labels include matchLabels, in the
// order they were added; shared tells that the list is the snapshot's own, which callers
// must not modify: all of a namespace's, or all that carry the one label asked.
func (s *Snapshot) Selected(ns string, matchLabels map[string]string) (selected []*Workload, shared bool) {
	candidates := s.Pods[ns]
	if len(matchLabels) == 0 {
		return candidates, true
	}
	for k, v := range matchLabels {
		if carrying := s.podsByLabel[ns][labelPair{k, v}]; len(carrying) < len(candidates) {
			candidates = carrying
		}
	}
	if len(matchLabels) == 1 && len(candidates) < len(s.Pods[ns]) {
		return candidates, true // all carry the one label
	}
	for _, w := range candidates {
		if Selects(matchLabels, w.Labels) {
			selected = append(selected, w)
		}
	}
	return selected, false
}

func (s *Snapshot) Settings(ns string) Settings {
	settings := MergeGuardrails(s.Rails, ns, WithNameLabel(ns, s.Namespaces[ns]))
	if s.Root != "" && !slices.ContainsFunc(s.Rails, func(g *MeshGuardrail) bool { return g.Spec.RootNamespace != "" }) {
		settings.Root = s.Root
	}
	return settings
}

// WithNameLabel adds the label the API server puts on every namespace.
func WithNameLabel(ns string, l map[string]string) map[string]string {
	if l[corev1.LabelMetadataName] == ns {
		return l
	}
	out := make(map[string]string, len(l)+1)
	for k, v := range l {
		out[k] = v
	}
	out[corev1.LabelMetadataName] = ns
	return out
}

// Selects is Istio's workload selection: every label of the selector is on the workload.
// An empty selector selects everything.
// It runs for every policy and workload pair, so it allocates nothing.
func Selects(selector, workloadLabels map[string]string) bool {
	for k, v := range selector {
		if got, ok := workloadLabels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// SortedKeys are the keys of m, sorted.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// changed is a State with one object removed, added or replaced: the state an admission
// request would leave behind.
type changed struct {
	State
	removed metav1.Object // may be nil
	added   metav1.Object // may be nil
}

// WithChange returns the state after replacing removed by added (either may be nil). An
// object written while terminating is gone.
func WithChange(st State, removed, added metav1.Object) State {
	if added != nil && Terminating(added) {
		added = nil
	}
	return &changed{State: st, removed: removed, added: added}
}

// OldestFirst sorts objects as a State lists them: oldest first, by name among equals
// (Istio ranks equals by age: the oldest PeerAuthentication of a level wins).
func OldestFirst[T metav1.Object](items []T) []T {
	slices.SortStableFunc(items, func(a, b T) int {
		if c := a.GetCreationTimestamp().Compare(b.GetCreationTimestamp().Time); c != 0 {
			return c
		}
		return strings.Compare(a.GetName(), b.GetName())
	})
	return items
}

// Terminating tells whether o is a policy or Gateway being deleted: it has a
// deletionTimestamp and waits for its finalizers. It counts as gone, in every state the
// engine judges: whoever set the finalizers removes them when they choose, by a write that
// changes nothing Istio reads, and that must not be the moment protection ends unjudged.
func Terminating(o metav1.Object) bool {
	switch o.(type) {
	case *RequestAuthentication, *AuthorizationPolicy, *PeerAuthentication, *Gateway:
		return o.GetDeletionTimestamp() != nil
	}
	return false
}

// applyChange returns list with the change applied. keep tells which objects of the change
// belong in this list (its namespace, its selector).
func applyChange[T metav1.Object](c *changed, list []T, keep func(T) bool) []T {
	rm, rmOK := c.removed.(T)
	add, addOK := c.added.(T)
	rmOK = rmOK && keep(rm)
	addOK = addOK && keep(add)
	if !rmOK && !addOK {
		return list
	}
	// An updated object keeps its place: Istio ranks equals by age, and an update ages nothing.
	out := make([]T, 0, len(list)+1)
	placed := false
	for _, o := range list {
		switch {
		case addOK && SameObject(o, add):
			if !placed {
				out, placed = append(out, add), true
			}
		case rmOK && SameObject(o, rm):
		default:
			out = append(out, o)
		}
	}
	if addOK && !placed {
		out = append(out, add)
	}
	return out
}

func inNamespace[T metav1.Object](ns string) func(T) bool {
	return func(o T) bool { return o.GetNamespace() == ns }
}

func (c *changed) RequestAuthentications(ns string) []*RequestAuthentication {
	return applyChange(c, c.State.RequestAuthentications(ns), inNamespace[*RequestAuthentication](ns))
}

func (c *changed) AuthorizationPolicies(ns string) []*AuthorizationPolicy {
	return applyChange(c, c.State.AuthorizationPolicies(ns), inNamespace[*AuthorizationPolicy](ns))
}

func (c *changed) PeerAuthentications(ns string) []*PeerAuthentication {
	return applyChange(c, c.State.PeerAuthentications(ns), inNamespace[*PeerAuthentication](ns))
}

// PolicyMemo is the memo of the state changed, but for the namespace whose policies the
// change is to.
func (c *changed) PolicyMemo(ns string) *Memo {
	for _, o := range []metav1.Object{c.removed, c.added} {
		switch o.(type) {
		case *RequestAuthentication, *AuthorizationPolicy, *PeerAuthentication:
			if o.GetNamespace() == ns {
				return nil
			}
		}
	}
	if m, ok := c.State.(Memos); ok {
		return m.PolicyMemo(ns)
	}
	return nil
}

func (c *changed) Workloads(ns string, matchLabels map[string]string) []*Workload {
	return applyChange(c, c.State.Workloads(ns, matchLabels), func(w *Workload) bool {
		return (ns == "" || w.Namespace == ns) && Selects(matchLabels, w.Labels)
	})
}

func (c *changed) Services(ns string) []*corev1.Service {
	return applyChange(c, c.State.Services(ns), inNamespace[*corev1.Service](ns))
}

func (c *changed) ServiceEntries(ns string) []*ServiceEntry {
	return applyChange(c, c.State.ServiceEntries(ns), inNamespace[*ServiceEntry](ns))
}

func (c *changed) Gateways(ns string) []*Gateway {
	return applyChange(c, c.State.Gateways(ns), inNamespace[*Gateway](ns))
}

func (c *changed) HTTPRoutes(ns string) []*HTTPRoute {
	return applyChange(c, c.State.HTTPRoutes(ns), inNamespace[*HTTPRoute](ns))
}

// Settings reads a namespace changed by the change with its new labels: its data plane
// and waypoint (the guardrails governing it are those of before).
func (c *changed) Settings(ns string) Settings {
	s := c.State.Settings(ns)
	if n, ok := c.added.(*corev1.Namespace); ok && n.Name == ns {
		s.NamespaceLabels = WithNameLabel(ns, n.Labels)
	}
	return s
}
