package policy

import (
	"slices"

	securityv1beta1 "istio.io/api/security/v1beta1"
)

// Istio's ambient data plane: ztunnel intercepts an enrolled Pod's traffic on its node and
// enforces L4 policy only; waypoints enforce what is attached to them by targetRefs.
const (
	DataplaneModeLabel           = "istio.io/dataplane-mode"
	AmbientRedirectionAnnotation = "ambient.istio.io/redirection"
	revisionLabel                = "istio.io/rev"
	injectionLabel               = "istio-injection"
)

// inAmbient tells whether ztunnel, not a sidecar, takes a workload's inbound traffic: the
// Pod's redirection annotation once enrolled, else its istio.io/dataplane-mode label, else
// its namespace's, a sidecar taking precedence. Proxies and Pods on the host's network are
// never enrolled.
func inAmbient(st State, w *Workload) bool {
	if isProxy(w) || w.HostNetwork {
		return false
	}
	if w.Annotations[AmbientRedirectionAnnotation] == "enabled" {
		return true
	}
	ns := st.Settings(w.Namespace).NamespaceLabels
	switch w.Labels[DataplaneModeLabel] {
	case "none":
		return false
	case "ambient":
		return !sidecarInjected(ns, w)
	}
	return ns[DataplaneModeLabel] == "ambient" && !sidecarInjected(ns, w)
}

// sidecarInjected tells whether Istio's injector gives a Pod a sidecar: its namespace asks
// for injection (istio-injection=enabled, or a revision label without istio-injection), or
// the Pod does (sidecar.istio.io/inject=true, a revision label), unless the Pod opts out.
func sidecarInjected(ns map[string]string, w *Workload) bool {
	if w.Labels[SidecarInjectLabel] == "false" {
		return false
	}
	return ns[injectionLabel] == "enabled" || ns[revisionLabel] != "" && ns[injectionLabel] == "" ||
		w.Labels[SidecarInjectLabel] == "true" || w.Labels[revisionLabel] != ""
}

// ambientOf returns the workloads of ws that ztunnel intercepts.
func ambientOf(st State, ws []*Workload) []*Workload {
	return lacking(ws, func(w *Workload) bool { return inAmbient(st, w) })
}

// l4Source and l4Operation tell whether a source or operation names a field ztunnel
// enforces; l4WhenKeys are the when keys it does (istiod's l4WhenAttributes).
func l4Source(s *securityv1beta1.Source) bool {
	return len(s.IpBlocks)+len(s.NotIpBlocks)+len(s.Namespaces)+len(s.NotNamespaces)+
		len(s.Principals)+len(s.NotPrincipals)+len(s.ServiceAccounts)+len(s.NotServiceAccounts) > 0
}

func l4Operation(o *securityv1beta1.Operation) bool { return len(o.Ports)+len(o.NotPorts) > 0 }

var l4WhenKeys = map[string]bool{
	"source.ip": true, "source.namespace": true, "source.principal": true, "destination.ip": true, "destination.port": true,
}

// ztunnelNoOpClause returns the path of a clause of a DENY rule that ztunnel cannot match:
// a from or to list whose every entry names only HTTP-level fields, or a when condition on
// an HTTP-level key. ztunnel receives such a clause empty and skips it, so the rule never
// fires (istio#61126). "" when every clause keeps an L4 part.
func ztunnelNoOpClause(r *apRule, at string) string {
	if len(r.From) > 0 && !slices.ContainsFunc(r.From, func(f *securityv1beta1.Rule_From) bool { return f.Source != nil && l4Source(f.Source) }) {
		return at + ".from"
	}
	if len(r.To) > 0 && !slices.ContainsFunc(r.To, func(t *securityv1beta1.Rule_To) bool { return t.Operation != nil && l4Operation(t.Operation) }) {
		return at + ".to"
	}
	for k, w := range r.When {
		if !l4WhenKeys[w.Key] {
			return element(at+".when", k)
		}
	}
	return ""
}
