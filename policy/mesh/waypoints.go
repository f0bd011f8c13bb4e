package mesh

import (
	"cmp"
	"fmt"
	"iter"
	"slices"

	typev1beta1 "istio.io/api/type/v1beta1"
	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TrustDomain is the mesh's trust domain, as Istio's default meshConfig sets it: the
// identities meshguard gives the mesh's own proxies and callers are in it.
const TrustDomain = "cluster.local"

// WaypointTarget is what a waypoint serves: a Service, or a ServiceEntry (an egress
// waypoint).
type WaypointTarget struct {
	Kind, Namespace, Name string
	Labels                map[string]string
	Headless              bool
}

// ServiceTarget is a Service as a waypoint serves it.
func ServiceTarget(svc *corev1.Service) WaypointTarget {
	return WaypointTarget{"Service", svc.Namespace, svc.Name, svc.Labels, svc.Spec.ClusterIP == corev1.ClusterIPNone}
}

// EntryTarget is a ServiceEntry as an egress waypoint serves it.
func EntryTarget(se *ServiceEntry) WaypointTarget {
	return WaypointTarget{KindServiceEntry, se.Namespace, se.Name, se.Labels, false}
}

// ServiceWaypoint resolves the waypoint that takes a Service's (or ServiceEntry's)
// traffic, as istiod binds it (pilot/pkg/serviceregistry/ambient/waypoints.go): its
// istio.io/use-waypoint label, else its namespace's ("none" opts out); a Gateway of class
// istio-waypoint by that name, serving Services (istio.io/waypoint-for service or all),
// whose listeners admit the target's namespace. It returns the waypoint, or why there is
// none; neither when the state cannot tell.
func ServiceWaypoint(st State, t WaypointTarget) (*Gateway, string) {
	labels, bound := t.Labels, t.Kind+" "+t.Namespace+"/"+t.Name
	if labels[UseWaypointLabel] == "" {
		labels, bound = st.Settings(t.Namespace).NamespaceLabels, "namespace "+t.Namespace
	}
	name, ns := labels[UseWaypointLabel], labels[UseWaypointNamespaceLabel]
	if ns == "" {
		ns = t.Namespace
	}
	switch {
	case t.Headless:
		return nil, fmt.Sprintf("%s %s/%s is headless: its traffic goes to Pod addresses, which a Service's waypoint does not take", t.Kind, t.Namespace, t.Name)
	case name == "":
		return nil, fmt.Sprintf("neither %s %s/%s nor its namespace names a waypoint (%s)", t.Kind, t.Namespace, t.Name, UseWaypointLabel)
	case name == "none":
		return nil, fmt.Sprintf("%s opts out of waypoints (%s: none)", bound, UseWaypointLabel)
	case !st.KnowsGateways():
		return nil, ""
	}
	i := slices.IndexFunc(st.Gateways(ns), func(g *Gateway) bool { return g.Name == name })
	if i < 0 {
		return nil, fmt.Sprintf("%s names waypoint %s/%s, and there is no such Gateway", bound, ns, name)
	}
	gw := st.Gateways(ns)[i]
	if string(gw.Spec.GatewayClassName) != WaypointClass {
		return nil, fmt.Sprintf("Gateway %s/%s is of class %q, not a waypoint (%s)", ns, name, gw.Spec.GatewayClassName, WaypointClass)
	}
	if f := WaypointFor(st, gw); f != "service" && f != "all" {
		return nil, fmt.Sprintf("waypoint %s/%s serves %s traffic only (%s), not a Service's", ns, name, f, WaypointForLabel)
	}
	if ns != t.Namespace && !slices.ContainsFunc(gw.Spec.Listeners, func(l gatewayv1.Listener) bool {
		return AdmitsNamespace(l.AllowedRoutes, st.Settings(t.Namespace).NamespaceLabels)
	}) {
		return nil, fmt.Sprintf("waypoint %s/%s admits no Service of namespace %s (its listeners' allowedRoutes)", ns, name, t.Namespace)
	}
	return gw, ""
}

// AdmitsNamespace tells whether a listener's allowedRoutes admit another namespace than
// the Gateway's, of these labels: All, or a Selector they match; Same (the default) not.
func AdmitsNamespace(allowed *gatewayv1.AllowedRoutes, namespaceLabels map[string]string) bool {
	if allowed == nil || allowed.Namespaces == nil || allowed.Namespaces.From == nil {
		return false
	}
	switch *allowed.Namespaces.From {
	case gatewayv1.NamespacesFromAll:
		return true
	case gatewayv1.NamespacesFromSelector:
		selector, err := metav1.LabelSelectorAsSelector(allowed.Namespaces.Selector)
		return err == nil && allowed.Namespaces.Selector != nil && selector.Matches(labels.Set(namespaceLabels))
	}
	return false
}

// WaypointFor is the traffic a waypoint serves: its istio.io/waypoint-for label, else its
// GatewayClass's, else "service".
func WaypointFor(st State, gw *Gateway) string {
	if f := gw.Labels[WaypointForLabel]; f != "" {
		return f
	}
	if class := st.GatewayClass(string(gw.Spec.GatewayClassName)); class != nil && class.Labels[WaypointForLabel] != "" {
		return class.Labels[WaypointForLabel]
	}
	return "service"
}

// WaypointOf returns the waypoint a workload's traffic arrives through (that of a Service
// selecting it, bound to a working waypoint; nil when none is known), and the Services
// selecting it that are bound to that waypoint.
func WaypointOf(st State, w *Workload) (gw *Gateway, services []string) {
	for svc := range ServicesSelecting(st, w) {
		if bound, _ := ServiceWaypoint(st, ServiceTarget(svc)); bound != nil && (gw == nil || bound == gw) {
			gw, services = bound, append(services, svc.Name)
		}
	}
	return gw, services
}

// NamespaceWaypoint is the waypoint a namespace's istio.io/use-waypoint label binds its
// Services to (the Gateway as the state holds it, else by its name alone), or nil.
func NamespaceWaypoint(st State, ns string) *Gateway {
	nsLabels := st.Settings(ns).NamespaceLabels
	name, gwNamespace := nsLabels[UseWaypointLabel], cmp.Or(nsLabels[UseWaypointNamespaceLabel], ns)
	if name == "" || name == "none" {
		return nil
	}
	if i := slices.IndexFunc(st.Gateways(gwNamespace), func(g *Gateway) bool { return g.Name == name }); i >= 0 {
		return st.Gateways(gwNamespace)[i]
	}
	return &Gateway{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: gwNamespace}}
}

// WaypointIdentity is the principal a waypoint's Pods run as: the service account Istio
// names after the Gateway, in the cluster's trust domain.
func WaypointIdentity(gw *Gateway) string {
	return TrustDomain + "/ns/" + gw.Namespace + "/sa/" + gw.Name
}

// ServicesSelecting are the Services of w's namespace whose selector selects it.
func ServicesSelecting(st State, w *Workload) iter.Seq[*corev1.Service] {
	return func(yield func(*corev1.Service) bool) {
		for _, svc := range st.Services(w.Namespace) {
			if len(svc.Spec.Selector) > 0 && Selects(svc.Spec.Selector, w.Labels) && !yield(svc) {
				return
			}
		}
	}
}

// AtWaypoint returns the policies of list a waypoint enforces for a workload of namespace
// ns: those attached to the workload's Services bound to it (WaypointOf), to the
// waypoint's Gateway, or to every waypoint (GatewayClass istio-waypoint, from the root
// namespace). None without a waypoint.
func AtWaypoint[T metav1.Object](root, ns string, gw *Gateway, services []string, list func(string) []T) []T {
	if gw == nil {
		return nil
	}
	attached := func(o T, kind string, names ...string) bool {
		return slices.ContainsFunc(ScopeOf(o).TargetRefs, func(r *typev1beta1.PolicyTargetReference) bool {
			return r.Kind == kind && slices.Contains(names, r.Name)
		})
	}
	var out []T
	for _, o := range list(root) {
		if attached(o, KindGatewayClass, WaypointClass) {
			out = append(out, o)
		}
	}
	for _, o := range list(gw.Namespace) {
		if attached(o, "Gateway", gw.Name) {
			out = append(out, o)
		}
	}
	for _, o := range list(ns) {
		if attached(o, "Service", services...) {
			out = append(out, o)
		}
	}
	return out
}
