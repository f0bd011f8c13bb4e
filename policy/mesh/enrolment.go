package mesh

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Which proxy takes a workload's inbound traffic: a sidecar Istio's injector adds, or, in
// ambient mode, ztunnel on its node (and the waypoint its Services are bound to).

// Istio's sidecar controls on Pods: SidecarInjectLabel asks its injector for a sidecar, or
// refuses one (also read as an annotation); the others narrow what the sidecar intercepts.
const (
	SidecarInjectLabel         = "sidecar.istio.io/inject"
	ExcludeInboundAnnotation   = "traffic.sidecar.istio.io/excludeInboundPorts"
	IncludeInboundAnnotation   = "traffic.sidecar.istio.io/includeInboundPorts"
	InterceptionModeAnnotation = "sidecar.istio.io/interceptionMode"
)

// Istio's ambient data plane: ztunnel intercepts an enrolled Pod's traffic on its node and
// enforces L4 policy only; waypoints enforce what is attached to them by targetRefs.
const (
	DataplaneModeLabel             = "istio.io/dataplane-mode"
	AmbientRedirectionAnnotation   = "ambient.istio.io/redirection"
	BypassInboundCaptureAnnotation = "ambient.istio.io/bypass-inbound-capture"
	RevisionLabel                  = "istio.io/rev"
	InjectionLabel                 = "istio-injection"
	ManagedLabel                   = "gateway.istio.io/managed"
	UseWaypointLabel               = "istio.io/use-waypoint"
	UseWaypointNamespaceLabel      = "istio.io/use-waypoint-namespace"
	WaypointForLabel               = "istio.io/waypoint-for"
	// IngressUseWaypointLabel sends an ingress gateway's traffic through the waypoint.
	IngressUseWaypointLabel = "istio.io/ingress-use-waypoint"
	// RemovedGatewayNameLabel was put on gateway Pods before Istio 1.24.
	RemovedGatewayNameLabel = "istio.io/gateway-name"
)

// IsWaypoint tells whether workload labels are a waypoint's: Pods Istio's mesh controller
// (or agentgateway's waypoint controller) deploys.
func IsWaypoint(labels map[string]string) bool {
	v := labels[ManagedLabel]
	return v == "istio.io-mesh-controller" || strings.HasSuffix(v, "waypoint-controller")
}

// InAmbient tells whether ztunnel, not a sidecar, takes a workload's inbound traffic: the
// Pod's redirection annotation once enrolled, else its istio.io/dataplane-mode label, else
// its namespace's, a sidecar taking precedence. Proxies and Pods on the host's network are
// never enrolled.
func InAmbient(st State, w *Workload) bool {
	return !w.HostNetwork && MeantForAmbient(st, w)
}

// MeantForAmbient tells whether a workload's labels, or its namespace's, enrol it in
// ambient mode, whether or not ztunnel can intercept it.
func MeantForAmbient(st State, w *Workload) bool {
	return EnrolledInAmbient(st.Settings(w.Namespace).NamespaceLabels, w)
}

// EnrolledInAmbient is MeantForAmbient, given the labels of the workload's namespace. It
// asks first what most Pods lack, as it is asked of every Pod a mesh-wide policy selects.
func EnrolledInAmbient(ns map[string]string, w *Workload) bool {
	enrolled := w.Annotations[AmbientRedirectionAnnotation] == "enabled"
	if !enrolled {
		switch w.Labels[DataplaneModeLabel] {
		case "none":
			return false
		case "ambient":
			enrolled = !SidecarInjected(ns, w)
		default:
			enrolled = ns[DataplaneModeLabel] == "ambient" && !SidecarInjected(ns, w)
		}
	}
	return enrolled && !IsProxy(w)
}

// ZtunnelBypassed says why ztunnel does not intercept a workload meant for ambient mode
// (MeantForAmbient), and the field that says so; nil when it does.
func ZtunnelBypassed(w *Workload) (path *field.Path, why string) {
	switch {
	case w.Annotations[BypassInboundCaptureAnnotation] == "true":
		return field.NewPath("metadata", "annotations").Key(BypassInboundCaptureAnnotation), "its inbound traffic bypasses ztunnel"
	case w.HostNetwork:
		return field.NewPath("spec", "hostNetwork"), "it runs on the host's network, which ztunnel does not intercept"
	case w.Namespace == "kube-system":
		return field.NewPath("metadata", "namespace"), "istio-cni excludes kube-system"
	}
	return nil, ""
}

// LeavesAmbient tells whether a workload of an ambient namespace opts out of ambient mode
// (istio.io/dataplane-mode: none) with no sidecar to take its place: nothing intercepts it.
// istio-cni acts on the label at once, on a running Pod too.
func LeavesAmbient(ns map[string]string, w *Workload) bool {
	return w.Labels[DataplaneModeLabel] == "none" && ns[DataplaneModeLabel] == "ambient" && !SidecarInjected(ns, w) && !IsProxy(w)
}

// SidecarInjected tells whether Istio's injector gives a Pod a sidecar: its namespace asks
// for injection (istio-injection=enabled, or a revision label without istio-injection), or
// the Pod does (sidecar.istio.io/inject=true, a revision label), unless the Pod opts out.
func SidecarInjected(ns map[string]string, w *Workload) bool {
	if InjectionRefused(w.Labels[SidecarInjectLabel]) {
		return false
	}
	return ns[InjectionLabel] == "enabled" || ns[RevisionLabel] != "" && ns[InjectionLabel] == "" ||
		w.Labels[SidecarInjectLabel] != "" && !InjectionRefused(w.Labels[SidecarInjectLabel]) || w.Labels[RevisionLabel] != ""
}

// InjectionRefused tells whether a sidecar.istio.io/inject value keeps Istio's injector
// from injecting: any value but y, yes, true or on, in any case (the injector's
// injectRequired); "" (unset) leaves it to the namespace.
func InjectionRefused(value string) bool {
	switch strings.ToLower(value) {
	case "", "y", "yes", "true", "on":
		return false
	}
	return true
}

// IsProxy tells whether a workload is one of Istio's proxies rather than an application:
// an ingress or egress gateway of the classic charts (istio: ingressgateway) or of AKS's
// add-on (istio: aks-istio-ingressgateway-external), a Gateway
// API gateway or a waypoint (gateway.istio.io/managed, gateway.networking.k8s.io/
// gateway-name), running Istio's proxy container where its spec is known (IsProxyContainer):
// an application labelled like a gateway is none. A proxy enforces the policies attached
// to it, runs no sidecar (sidecar.istio.io/inject: "false" is normal there), and is no
// workload to cover.
func IsProxy(w *Workload) bool {
	if w.ProxyContainer == ProxyAbsent {
		return false
	}
	_, managed := w.Labels["gateway.istio.io/managed"]
	_, gatewayAPI := w.Labels["gateway.networking.k8s.io/gateway-name"]
	// The AKS add-on's gateways are istio: aks-istio-ingressgateway-external (or -internal).
	istio := w.Labels["istio"]
	return managed || gatewayAPI || strings.HasSuffix(istio, "gateway") || strings.Contains(istio, "ingressgateway") || strings.Contains(istio, "egressgateway")
}

// InjectionDisabled tells whether a workload's namespace turns sidecar injection off
// (istio-injection: disabled): the injector then gives none of its Pods a sidecar.
func InjectionDisabled(st State, w *Workload) bool {
	return st.Settings(w.Namespace).NamespaceLabels[InjectionLabel] == "disabled"
}

// NotEnforceable says why Istio cannot enforce policy on a workload, and the field that says so; nil when it can.
func NotEnforceable(w *Workload) (path *field.Path, why string) {
	include, narrowed := w.Annotations[IncludeInboundAnnotation]
	switch {
	case InjectionRefused(w.Labels[SidecarInjectLabel]):
		return field.NewPath("metadata", "labels").Key(SidecarInjectLabel), "sidecar injection is disabled"
	case InjectionRefused(w.Annotations[SidecarInjectLabel]):
		return field.NewPath("metadata", "annotations").Key(SidecarInjectLabel), "sidecar injection is disabled"
	case w.HostNetwork:
		return field.NewPath("spec", "hostNetwork"), "it runs on the host network, where no sidecar intercepts"
	case w.Annotations[ExcludeInboundAnnotation] != "":
		return field.NewPath("metadata", "annotations").Key(ExcludeInboundAnnotation),
			fmt.Sprintf("inbound ports %s bypass the sidecar", w.Annotations[ExcludeInboundAnnotation])
	case narrowed && strings.TrimSpace(include) == "":
		return field.NewPath("metadata", "annotations").Key(IncludeInboundAnnotation), "no inbound port is redirected to the sidecar"
	case narrowed && strings.TrimSpace(include) != "*":
		return field.NewPath("metadata", "annotations").Key(IncludeInboundAnnotation), fmt.Sprintf("inbound ports other than %s bypass the sidecar", include)
	case strings.EqualFold(w.Annotations[InterceptionModeAnnotation], "NONE"):
		return field.NewPath("metadata", "annotations").Key(InterceptionModeAnnotation), "the sidecar intercepts no traffic"
	}
	return nil, ""
}
