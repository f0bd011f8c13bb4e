package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	typev1beta1 "istio.io/api/type/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// Istio's ambient data plane: ztunnel intercepts an enrolled Pod's traffic on its node and
// enforces L4 policy only; waypoints enforce what is attached to them by targetRefs.
const (
	DataplaneModeLabel             = "istio.io/dataplane-mode"
	AmbientRedirectionAnnotation   = "ambient.istio.io/redirection"
	BypassInboundCaptureAnnotation = "ambient.istio.io/bypass-inbound-capture"
	revisionLabel                  = "istio.io/rev"
	injectionLabel                 = "istio-injection"
	managedLabel                   = "gateway.istio.io/managed"
	useWaypointLabel               = "istio.io/use-waypoint"
	useWaypointNSLabel             = "istio.io/use-waypoint-namespace"
	waypointForLabel               = "istio.io/waypoint-for"
	// ingressUseWaypointLabel sends an ingress gateway's traffic through the waypoint.
	ingressUseWaypointLabel = "istio.io/ingress-use-waypoint"
	// removedGatewayNameLabel was put on gateway Pods before Istio 1.24.
	removedGatewayNameLabel = "istio.io/gateway-name"
)

// isWaypoint tells whether workload labels are a waypoint's: Pods Istio's mesh controller
// (or agentgateway's waypoint controller) deploys.
func isWaypoint(labels map[string]string) bool {
	v := labels[managedLabel]
	return v == "istio.io-mesh-controller" || strings.HasSuffix(v, "waypoint-controller")
}

// inAmbient tells whether ztunnel, not a sidecar, takes a workload's inbound traffic: the
// Pod's redirection annotation once enrolled, else its istio.io/dataplane-mode label, else
// its namespace's, a sidecar taking precedence. Proxies and Pods on the host's network are
// never enrolled.
func inAmbient(st State, w *Workload) bool {
	return !w.HostNetwork && meantForAmbient(st, w)
}

// meantForAmbient tells whether a workload's labels, or its namespace's, enrol it in
// ambient mode, whether or not ztunnel can intercept it.
func meantForAmbient(st State, w *Workload) bool {
	return enrolledInAmbient(st.Settings(w.Namespace).NamespaceLabels, w)
}

// enrolledInAmbient is meantForAmbient, given the labels of the workload's namespace. It
// asks first what most Pods lack, as it is asked of every Pod a mesh-wide policy selects.
func enrolledInAmbient(ns map[string]string, w *Workload) bool {
	enrolled := w.Annotations[AmbientRedirectionAnnotation] == "enabled"
	if !enrolled {
		switch w.Labels[DataplaneModeLabel] {
		case "none":
			return false
		case "ambient":
			enrolled = !sidecarInjected(ns, w)
		default:
			enrolled = ns[DataplaneModeLabel] == "ambient" && !sidecarInjected(ns, w)
		}
	}
	return enrolled && !isProxy(w)
}

// leavesAmbient tells whether a workload of an ambient namespace opts out of ambient mode
// (istio.io/dataplane-mode: none) with no sidecar to take its place: nothing intercepts it.
// istio-cni acts on the label at once, on a running Pod too.
func leavesAmbient(ns map[string]string, w *Workload) bool {
	return w.Labels[DataplaneModeLabel] == "none" && ns[DataplaneModeLabel] == "ambient" && !sidecarInjected(ns, w) && !isProxy(w)
}

// sidecarInjected tells whether Istio's injector gives a Pod a sidecar: its namespace asks
// for injection (istio-injection=enabled, or a revision label without istio-injection), or
// the Pod does (sidecar.istio.io/inject=true, a revision label), unless the Pod opts out.
func sidecarInjected(ns map[string]string, w *Workload) bool {
	if injectionRefused(w.Labels[SidecarInjectLabel]) {
		return false
	}
	return ns[injectionLabel] == "enabled" || ns[revisionLabel] != "" && ns[injectionLabel] == "" ||
		w.Labels[SidecarInjectLabel] != "" && !injectionRefused(w.Labels[SidecarInjectLabel]) || w.Labels[revisionLabel] != ""
}

// ztunnelWorkloads returns the ambient workloads a policy reaches through ztunnel: those it
// selects (or its namespace's, or the mesh's), unless it is attached by targetRefs.
func (c *Context) ztunnelWorkloads(o metav1.Object) []*Workload {
	if len(mesh.ScopeOf(o).TargetRefs) > 0 {
		return nil
	}
	return c.workloadsWhere(o, func(f workloadFacts) bool { return f.ambient })
}

// mixedEntry returns the path of a from or to entry of a rule that names both L4 and
// HTTP-level fields, or "": ztunnel keeps the L4 part alone.
func mixedEntry(r *apRule, at string) string {
	for j, f := range r.From {
		if s := f.Source; s != nil && rulefields.L4Source(s) && rulefields.HTTPSource(s) {
			return fmt.Sprintf("%s.from[%d].source", at, j)
		}
	}
	for j, t := range r.To {
		if o := t.Operation; o != nil && rulefields.L4Operation(o) && rulefields.HTTPOperation(o) {
			return fmt.Sprintf("%s.to[%d].operation", at, j)
		}
	}
	return ""
}

// silentFields returns the paths of the fields of a rule ztunnel drops with no status:
// trust domains, and the when keys it does not take although sidecars treat them at L4.
func silentFields(r *apRule, at string) []string {
	var out []string
	for j, f := range r.From {
		if s := f.Source; s != nil && rulefields.UnsentSource(s) {
			out = append(out, fmt.Sprintf("%s.from[%d].source", at, j))
		}
	}
	for k, w := range r.When {
		if rulefields.ZtunnelOf(w.Key) == rulefields.ZtunnelHTTPSilent {
			out = append(out, fmt.Sprintf("%s.when[%d].key", at, k))
		}
	}
	return out
}

// waypointTarget is what a waypoint serves: a Service, or a ServiceEntry (an egress
// waypoint).
type waypointTarget struct {
	kind, namespace, name string
	labels                map[string]string
	headless              bool
}

func serviceTarget(svc *corev1.Service) waypointTarget {
	return waypointTarget{"Service", svc.Namespace, svc.Name, svc.Labels, svc.Spec.ClusterIP == corev1.ClusterIPNone}
}

func entryTarget(se *ServiceEntry) waypointTarget {
	return waypointTarget{KindServiceEntry, se.Namespace, se.Name, se.Labels, false}
}

// serviceWaypoint resolves the waypoint that takes a Service's (or ServiceEntry's)
// traffic, as istiod binds it (pilot/pkg/serviceregistry/ambient/waypoints.go): its
// istio.io/use-waypoint label, else its namespace's ("none" opts out); a Gateway of class
// istio-waypoint by that name, serving Services (istio.io/waypoint-for service or all),
// whose listeners admit the target's namespace. It returns the waypoint, or why there is
// none; neither when the state cannot tell.
func serviceWaypoint(st State, t waypointTarget) (*Gateway, string) {
	labels, bound := t.labels, t.kind+" "+t.namespace+"/"+t.name
	if labels[useWaypointLabel] == "" {
		labels, bound = st.Settings(t.namespace).NamespaceLabels, "namespace "+t.namespace
	}
	name, ns := labels[useWaypointLabel], labels[useWaypointNSLabel]
	if ns == "" {
		ns = t.namespace
	}
	switch {
	case t.headless:
		return nil, fmt.Sprintf("%s %s/%s is headless: its traffic goes to Pod addresses, which a Service's waypoint does not take", t.kind, t.namespace, t.name)
	case name == "":
		return nil, fmt.Sprintf("neither %s %s/%s nor its namespace names a waypoint (%s)", t.kind, t.namespace, t.name, useWaypointLabel)
	case name == "none":
		return nil, fmt.Sprintf("%s opts out of waypoints (%s: none)", bound, useWaypointLabel)
	case !st.KnowsGateways():
		return nil, ""
	}
	i := slices.IndexFunc(st.Gateways(ns), func(g *Gateway) bool { return g.Name == name })
	if i < 0 {
		return nil, fmt.Sprintf("%s names waypoint %s/%s, and there is no such Gateway", bound, ns, name)
	}
	gw := st.Gateways(ns)[i]
	if string(gw.Spec.GatewayClassName) != mesh.WaypointClass {
		return nil, fmt.Sprintf("Gateway %s/%s is of class %q, not a waypoint (%s)", ns, name, gw.Spec.GatewayClassName, mesh.WaypointClass)
	}
	if f := waypointFor(st, gw); f != "service" && f != "all" {
		return nil, fmt.Sprintf("waypoint %s/%s serves %s traffic only (%s), not a Service's", ns, name, f, waypointForLabel)
	}
	if ns != t.namespace && !slices.ContainsFunc(gw.Spec.Listeners, func(l gatewayv1.Listener) bool {
		return admitsNamespace(l.AllowedRoutes, st.Settings(t.namespace).NamespaceLabels)
	}) {
		return nil, fmt.Sprintf("waypoint %s/%s admits no Service of namespace %s (its listeners' allowedRoutes)", ns, name, t.namespace)
	}
	return gw, ""
}

// admitsNamespace tells whether a listener's allowedRoutes admit another namespace than
// the Gateway's, of these labels: All, or a Selector they match; Same (the default) not.
func admitsNamespace(allowed *gatewayv1.AllowedRoutes, namespaceLabels map[string]string) bool {
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

// waypointFor is the traffic a waypoint serves: its istio.io/waypoint-for label, else its
// GatewayClass's, else "service".
func waypointFor(st State, gw *Gateway) string {
	if f := gw.Labels[waypointForLabel]; f != "" {
		return f
	}
	if class := st.GatewayClass(string(gw.Spec.GatewayClassName)); class != nil && class.Labels[waypointForLabel] != "" {
		return class.Labels[waypointForLabel]
	}
	return "service"
}

// waypointOf returns the waypoint a workload's traffic arrives through (that of a Service
// selecting it, bound to a working waypoint; nil when none is known), and the Services
// selecting it that are bound to that waypoint.
func waypointOf(st State, w *Workload) (gw *Gateway, services []string) {
	for svc := range servicesSelecting(st, w) {
		if bound, _ := serviceWaypoint(st, serviceTarget(svc)); bound != nil && (gw == nil || bound == gw) {
			gw, services = bound, append(services, svc.Name)
		}
	}
	return gw, services
}

// namespaceWaypoint is the waypoint a namespace's istio.io/use-waypoint label binds its
// Services to (the Gateway as the state holds it, else by its name alone), or nil.
func namespaceWaypoint(st State, ns string) *Gateway {
	nsLabels := st.Settings(ns).NamespaceLabels
	name, gwNamespace := nsLabels[useWaypointLabel], cmp.Or(nsLabels[useWaypointNSLabel], ns)
	if name == "" || name == "none" {
		return nil
	}
	if i := slices.IndexFunc(st.Gateways(gwNamespace), func(g *Gateway) bool { return g.Name == name }); i >= 0 {
		return st.Gateways(gwNamespace)[i]
	}
	return &Gateway{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: gwNamespace}}
}

// waypointIdentity is the principal a waypoint's Pods run as: the service account Istio
// names after the Gateway, in the cluster's trust domain.
func waypointIdentity(gw *Gateway) string {
	return dataplane.TrustDomain + "/ns/" + gw.Namespace + "/sa/" + gw.Name
}

// ztunnelAdmits tells whether ztunnel lets some connection without a token reach an
// ambient workload, under the policies it enforces for it.
func ztunnelAdmits(st State, root string, w *Workload) bool {
	return dataplane.ZtunnelEnforcement(mesh.ForWorkload(w, root, st.AuthorizationPolicies), !mtlsStrict(st, root, w)).AdmitsTokenless()
}

// bypassesWaypoint returns a caller other than the waypoint that ztunnel lets reach a
// workload directly, described, or "" when ztunnel admits only the waypoint.
func bypassesWaypoint(st State, root string, w *Workload, gw *Gateway, aps []*AuthorizationPolicy) string {
	e := dataplane.ZtunnelEnforcement(aps, !mtlsStrict(st, root, w))
	peers := slices.DeleteFunc(e.Peers(), func(p request) bool { return p[rulefields.PeerPrincipal] == waypointIdentity(gw) })
	found, decided := e.Find(request{}, false, peers, e.Admits)
	switch {
	case !decided:
		return fmt.Sprintf("callers meshguard cannot rule out: the policies name more than %d combinations of values to try", dataplane.MaxRequestClasses)
	case found == nil:
		return ""
	case found[rulefields.PeerPrincipal] == "":
		return "a caller without mTLS"
	case found[rulefields.PeerPrincipal] != dataplane.AnyOther:
		return found[rulefields.PeerPrincipal]
	}
	return "any workload of the mesh, by the Pods' addresses"
}

// atWaypoint returns the policies of list a waypoint enforces for a workload of namespace
// ns: those attached to the workload's Services bound to it (waypointOf), to the
// waypoint's Gateway, or to every waypoint (GatewayClass istio-waypoint, from the root
// namespace). None without a waypoint.
func atWaypoint[T metav1.Object](root, ns string, gw *Gateway, services []string, list func(string) []T) []T {
	if gw == nil {
		return nil
	}
	attached := func(o T, kind string, names ...string) bool {
		return slices.ContainsFunc(mesh.ScopeOf(o).TargetRefs, func(r *typev1beta1.PolicyTargetReference) bool {
			return r.Kind == kind && slices.Contains(names, r.Name)
		})
	}
	var out []T
	for _, o := range list(root) {
		if attached(o, KindGatewayClass, mesh.WaypointClass) {
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
