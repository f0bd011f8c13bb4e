package mesh

import (
	"slices"

	typev1beta1 "istio.io/api/type/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The GatewayClasses of Istio's gateways.
const (
	// WaypointClass is the GatewayClass of Istio's waypoints.
	WaypointClass = "istio-waypoint"
	// IstioGatewayClass is that of the ingress and egress gateways istiod deploys.
	IstioGatewayClass = "istio"
)

// GatewayNameLabel is the label Istio puts on the Pods of a Gateway API gateway.
const GatewayNameLabel = "gateway.networking.k8s.io/gateway-name"

// TargetLabel marks the virtual workload of a policy attached by targetRefs to a Service or
// ServiceEntry (through its waypoint): policies naming the same target apply to it.
const TargetLabel = "meshguard.io/target-ref"

// TargetName is how a virtual workload names a policy's target (TargetLabel).
func TargetName(r *typev1beta1.PolicyTargetReference) string { return r.Kind + "." + r.Name }

// Scope is where a policy applies, in Istio's terms: the workloads of its namespace (of every
// namespace in the root namespace) whose labels include the selector's, or, with targetRefs,
// the gateways named there and nothing else.
type Scope struct {
	Namespace  string
	Labels     map[string]string
	TargetRefs []*typev1beta1.PolicyTargetReference
}

// SelectorLabels are the labels a workload selector asks for.
func SelectorLabels(sel *typev1beta1.WorkloadSelector) map[string]string {
	if sel == nil {
		return nil
	}
	return sel.MatchLabels
}

// allTargetRefs merges the legacy singular targetRef into targetRefs, as Istio does.
func allTargetRefs(one *typev1beta1.PolicyTargetReference, many []*typev1beta1.PolicyTargetReference) []*typev1beta1.PolicyTargetReference {
	if one == nil {
		return many
	}
	return append([]*typev1beta1.PolicyTargetReference{one}, many...)
}

// ScopeOf is where a policy applies.
func ScopeOf(o metav1.Object) Scope {
	switch o := o.(type) {
	case *RequestAuthentication:
		return Scope{o.Namespace, SelectorLabels(o.Spec.Selector), allTargetRefs(o.Spec.TargetRef, o.Spec.TargetRefs)}
	case *AuthorizationPolicy:
		return Scope{o.Namespace, SelectorLabels(o.Spec.Selector), allTargetRefs(o.Spec.TargetRef, o.Spec.TargetRefs)}
	case *PeerAuthentication:
		return Scope{Namespace: o.Namespace, Labels: SelectorLabels(o.Spec.Selector)}
	}
	return Scope{Namespace: o.GetNamespace()}
}

// AttachableKinds are the kinds Istio attaches policies to by targetRefs.
var AttachableKinds = []string{KindGateway, KindGatewayClass, KindService, KindServiceEntry}

// GatewayRefs are the targetRefs that name a Gateway: the only ones that reach Pods.
func (s Scope) GatewayRefs() []*typev1beta1.PolicyTargetReference {
	var out []*typev1beta1.PolicyTargetReference
	for _, r := range s.TargetRefs {
		if r.Kind == "Gateway" {
			out = append(out, r)
		}
	}
	return out
}

// WaypointOnly tells whether the policy is attached to waypoints only: by targetRefs to a
// Service, ServiceEntry or GatewayClass, or to Gateways st holds of the waypoint class.
func (s Scope) WaypointOnly(st State) bool {
	return len(s.TargetRefs) > 0 && !slices.ContainsFunc(s.GatewayRefs(), func(r *typev1beta1.PolicyTargetReference) bool {
		gw := s.gateway(st, r)
		return gw == nil || string(gw.Spec.GatewayClassName) != WaypointClass
	})
}

// PodsByIstiod tells whether the policy is attached by targetRefs only to Gateways whose
// Pods istiod deploys itself (of class istio-waypoint or istio): no manifest holds them.
func (s Scope) PodsByIstiod(st State) bool {
	refs := s.GatewayRefs()
	return len(refs) > 0 && len(refs) == len(s.TargetRefs) && !slices.ContainsFunc(refs, func(r *typev1beta1.PolicyTargetReference) bool {
		gw := s.gateway(st, r)
		return gw == nil || gw.Spec.GatewayClassName != WaypointClass && gw.Spec.GatewayClassName != IstioGatewayClass
	})
}

// gateway is the Gateway of the policy's namespace a targetRef names, or nil.
func (s Scope) gateway(st State, r *typev1beta1.PolicyTargetReference) *Gateway {
	i := slices.IndexFunc(st.Gateways(s.Namespace), func(g *Gateway) bool { return g.Name == r.Name })
	if i < 0 {
		return nil
	}
	return st.Gateways(s.Namespace)[i]
}

// Applies tells whether the policy applies to workload w.
func (s Scope) Applies(w *Workload, root string) bool {
	if s.Namespace != root && s.Namespace != w.Namespace {
		return false
	}
	if len(s.TargetRefs) > 0 {
		for _, r := range s.TargetRefs {
			if w.Namespace == s.Namespace && (r.Kind == "Gateway" && w.Labels[GatewayNameLabel] == r.Name ||
				w.Virtual && w.Labels[TargetLabel] == TargetName(r)) {
				return true
			}
		}
		return false
	}
	return Selects(s.Labels, w.Labels)
}

// Selected returns the workloads of st a policy applies to: those its selector or its
// Gateway targetRefs pick, in its namespace, or in every namespace from Istio's root one.
func Selected(st State, o metav1.Object) []*Workload {
	return ScopeOf(o).SelectedBy(st, st.Settings(o.GetNamespace()).Root)
}

// SelectedBy returns the real workloads the policy applies to.
func (s Scope) SelectedBy(st State, root string) []*Workload {
	ns := s.Namespace
	if ns == root {
		ns = ""
	}
	if len(s.TargetRefs) > 0 {
		var out []*Workload
		for _, r := range s.GatewayRefs() {
			out = append(out, st.Workloads(s.Namespace, map[string]string{GatewayNameLabel: r.Name})...)
		}
		return out
	}
	return st.Workloads(ns, s.Labels)
}

// Virtual is the workload the policy was written for, standing in when none exists yet.
func (s Scope) Virtual() *Workload {
	l := s.Labels
	if len(s.TargetRefs) > 0 {
		l = map[string]string{TargetLabel: TargetName(s.TargetRefs[0])}
		if r := s.TargetRefs[0]; r.Kind == "Gateway" {
			l = map[string]string{GatewayNameLabel: r.Name}
		}
	}
	return &Workload{ObjectMeta: &metav1.ObjectMeta{Namespace: s.Namespace, Labels: l}, Kind: KindPod, Virtual: true}
}

// Workloads returns the workloads the policy applies to, or its virtual workload when none
// is known: a cross-resource rule then judges the policies written for the same labels.
func (s Scope) Workloads(st State, root string) []*Workload {
	if ws := s.SelectedBy(st, root); len(ws) > 0 {
		return ws
	}
	return []*Workload{s.Virtual()}
}

// ForWorkload returns the objects of list (from w's namespace and the root namespace) that
// apply to w.
// It runs for every workload of a review, so it allocates only what it returns.
func ForWorkload[T metav1.Object](w *Workload, root string, list func(string) []T) []T {
	var out []T
	pick := func(ns string) {
		for _, o := range list(ns) {
			if ScopeOf(o).Applies(w, root) {
				out = append(out, o)
			}
		}
	}
	pick(root)
	if w.Namespace != root {
		pick(w.Namespace)
	}
	return out
}

// WorkloadsWhere returns the workloads of ws for which keep holds.
func WorkloadsWhere(ws []*Workload, keep func(w *Workload) bool) []*Workload {
	var out []*Workload
	for _, w := range ws {
		if keep(w) {
			out = append(out, w)
		}
	}
	return out
}
