package policy

import (
	"slices"

	typev1beta1 "istio.io/api/type/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// gatewayNameLabel is the label Istio puts on the Pods of a Gateway API gateway.
const gatewayNameLabel = "gateway.networking.k8s.io/gateway-name"

// targetLabel marks the virtual workload of a policy attached by targetRefs to a Service or
// ServiceEntry (through its waypoint): policies naming the same target apply to it.
const targetLabel = "meshguard.io/target-ref"

func targetName(r *typev1beta1.PolicyTargetReference) string { return r.Kind + "." + r.Name }

// scope is where a policy applies, in Istio's terms: the workloads of its namespace (of every
// namespace in the root namespace) whose labels include the selector's, or, with targetRefs,
// the gateways named there and nothing else.
type scope struct {
	namespace  string
	labels     map[string]string
	targetRefs []*typev1beta1.PolicyTargetReference
}

func selectorLabels(sel *typev1beta1.WorkloadSelector) map[string]string {
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

func scopeOf(o metav1.Object) scope {
	switch o := o.(type) {
	case *RequestAuthentication:
		return scope{o.Namespace, selectorLabels(o.Spec.Selector), allTargetRefs(o.Spec.TargetRef, o.Spec.TargetRefs)}
	case *AuthorizationPolicy:
		return scope{o.Namespace, selectorLabels(o.Spec.Selector), allTargetRefs(o.Spec.TargetRef, o.Spec.TargetRefs)}
	case *PeerAuthentication:
		return scope{namespace: o.Namespace, labels: selectorLabels(o.Spec.Selector)}
	}
	return scope{namespace: o.GetNamespace()}
}

// attachableKinds are the kinds Istio attaches policies to by targetRefs.
var attachableKinds = []string{KindGateway, KindGatewayClass, KindService, KindServiceEntry}

// gatewayRefs are the targetRefs that name a Gateway: the only ones that reach Pods.
func (s scope) gatewayRefs() []*typev1beta1.PolicyTargetReference {
	var out []*typev1beta1.PolicyTargetReference
	for _, r := range s.targetRefs {
		if r.Kind == "Gateway" {
			out = append(out, r)
		}
	}
	return out
}

// waypointOnly tells whether the policy is attached to waypoints only: by targetRefs to a
// Service, ServiceEntry or GatewayClass, or to Gateways st holds of the waypoint class.
func (s scope) waypointOnly(st State) bool {
	return len(s.targetRefs) > 0 && !slices.ContainsFunc(s.gatewayRefs(), func(r *typev1beta1.PolicyTargetReference) bool {
		gw := s.gateway(st, r)
		return gw == nil || string(gw.Spec.GatewayClassName) != waypointClass
	})
}

// podsByIstiod tells whether the policy is attached by targetRefs only to Gateways whose
// Pods istiod deploys itself (of class istio-waypoint or istio): no manifest holds them.
func (s scope) podsByIstiod(st State) bool {
	refs := s.gatewayRefs()
	return len(refs) > 0 && len(refs) == len(s.targetRefs) && !slices.ContainsFunc(refs, func(r *typev1beta1.PolicyTargetReference) bool {
		gw := s.gateway(st, r)
		return gw == nil || gw.Spec.GatewayClassName != waypointClass && gw.Spec.GatewayClassName != istioGatewayClass
	})
}

// gateway is the Gateway of the policy's namespace a targetRef names, or nil.
func (s scope) gateway(st State, r *typev1beta1.PolicyTargetReference) *Gateway {
	i := slices.IndexFunc(st.Gateways(s.namespace), func(g *Gateway) bool { return g.Name == r.Name })
	if i < 0 {
		return nil
	}
	return st.Gateways(s.namespace)[i]
}

// applies tells whether the policy applies to workload w.
func (s scope) applies(w *Workload, root string) bool {
	if s.namespace != root && s.namespace != w.Namespace {
		return false
	}
	if len(s.targetRefs) > 0 {
		for _, r := range s.targetRefs {
			if w.Namespace == s.namespace && (r.Kind == "Gateway" && w.Labels[gatewayNameLabel] == r.Name ||
				w.Virtual && w.Labels[targetLabel] == targetName(r)) {
				return true
			}
		}
		return false
	}
	return Selects(s.labels, w.Labels)
}

// Selected returns the workloads of st a policy applies to: those its selector or its
// Gateway targetRefs pick, in its namespace, or in every namespace from Istio's root one.
func Selected(st State, o metav1.Object) []*Workload {
	return scopeOf(o).selected(st, st.Settings(o.GetNamespace()).Root)
}

// selected returns the real workloads the policy applies to.
func (s scope) selected(st State, root string) []*Workload {
	ns := s.namespace
	if ns == root {
		ns = ""
	}
	if len(s.targetRefs) > 0 {
		var out []*Workload
		for _, r := range s.gatewayRefs() {
			out = append(out, st.Workloads(s.namespace, map[string]string{gatewayNameLabel: r.Name})...)
		}
		return out
	}
	return st.Workloads(ns, s.labels)
}

// virtual is the workload the policy was written for, standing in when none exists yet.
func (s scope) virtual() *Workload {
	l := s.labels
	if len(s.targetRefs) > 0 {
		l = map[string]string{targetLabel: targetName(s.targetRefs[0])}
		if r := s.targetRefs[0]; r.Kind == "Gateway" {
			l = map[string]string{gatewayNameLabel: r.Name}
		}
	}
	return &Workload{ObjectMeta: &metav1.ObjectMeta{Namespace: s.namespace, Labels: l}, Kind: KindPod, Virtual: true}
}

// workloads returns the workloads the policy applies to, or its virtual workload when none
// is known: a cross-resource rule then judges the policies written for the same labels.
func (s scope) workloads(st State, root string) []*Workload {
	if ws := s.selected(st, root); len(ws) > 0 {
		return ws
	}
	return []*Workload{s.virtual()}
}

// forWorkload returns the objects of list (from w's namespace and the root namespace) that
// apply to w.
// It runs for every workload of a review, so it allocates only what it returns.
func forWorkload[T metav1.Object](w *Workload, root string, list func(string) []T) []T {
	var out []T
	pick := func(ns string) {
		for _, o := range list(ns) {
			if scopeOf(o).applies(w, root) {
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

// changedWorkloads are the workloads the object of a change applied to and applies to,
// once each: those it was written for when none is known yet.
func (c *Context) changedWorkloads() []*Workload {
	root := c.Settings.Root
	var affected []*Workload
	switch {
	case c.OldObject == nil:
		affected = scopeOf(c.Object).workloads(c.Before, root)
	case c.Operation == Update:
		affected = append(scopeOf(c.OldObject).workloads(c.Before, root), scopeOf(c.Object).selected(c.State, root)...)
	default:
		affected = scopeOf(c.OldObject).workloads(c.Before, root)
	}
	seen := make(map[*Workload]bool, len(affected))
	return slices.DeleteFunc(affected, func(w *Workload) bool {
		dup := seen[w]
		seen[w] = true
		return dup
	})
}

// lostStrictMTLS returns the workloads of a change for which mTLS was STRICT before it and
// is not after: plaintext callers, which carry no identity, reach them from then on.
func (c *Context) lostStrictMTLS() []*Workload {
	if c.Before == nil {
		return nil
	}
	return lacking(c.changedWorkloads(), func(w *Workload) bool {
		return mtlsStrict(c.Before, c.Settings.Root, w) && !mtlsStrict(c.State, c.Settings.Root, w)
	})
}
