package policy

import (
	"maps"
	"slices"

	securityv1beta1 "istio.io/api/security/v1beta1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// A route is one way a request reaches a workload, and the proxies that enforce policy on
// the way, in order: straight to the workload, through the waypoint its Services are bound
// to, or in through an ingress gateway. Each proxy judges the request as it arrives there;
// one that forwards it passes it on under its own identity, the caller the next one sees.
type route struct {
	// via names the route: "direct", or the waypoint or gateway it passes, as "waypoint
	// ns/name" or "ingress ns/name".
	via  string
	hops []hop
}

// hop is one proxy of a route and what it enforces: its RequestAuthentications, and its
// AuthorizationPolicies as ztunnel translates them (L4 only) or as written.
type hop struct {
	proxy       string // sidecar, ztunnel, waypoint ns/name, ingress ns/name
	ras         []*RequestAuthentication
	aps         []*AuthorizationPolicy
	ztunnel     bool
	enforcement enforcement
	// mtlsStrict: callers without mTLS are refused before any policy; strictPorts, where
	// set, say it of the ports a workload's own PeerAuthentication names. hboneOnly: it is
	// so because the proxy takes HBONE only (a waypoint), not by a PeerAuthentication.
	mtlsStrict  bool
	strictPorts map[string]bool
	hboneOnly   bool
	// forwardsAs is the caller the next hop sees; nil at the last hop.
	forwardsAs request
}

// routesTo returns the routes requests take to workload w: direct (pod-addressed, or the
// only one without a waypoint), through its waypoint, and from each gateway of ingresses
// but w itself.
// Ingress traffic goes straight to an ambient workload, past its waypoint, unless its
// Service or namespace asks for the waypoint (istio.io/ingress-use-waypoint). A route to
// a workload nothing intercepts has no hop.
func routesTo(st State, root string, w *Workload, ingresses []*Workload) []route {
	last := localHop(st, root, w)
	routes := []route{{via: "direct", hops: last}}
	gw, services := (*Gateway)(nil), []string(nil)
	if mesh.InAmbient(st, w) {
		gw, services = mesh.WaypointOf(st, w)
	}
	var waypoint []hop
	if gw != nil {
		aps := atWaypoint(root, w.Namespace, gw, services, st.AuthorizationPolicies)
		waypoint = []hop{{
			proxy:       "waypoint " + gw.Namespace + "/" + gw.Name,
			ras:         atWaypoint(root, w.Namespace, gw, services, st.RequestAuthentications),
			aps:         aps,
			enforcement: dataplane.EnforcementOf(aps, false),
			mtlsStrict:  true,
			hboneOnly:   true,
			forwardsAs:  peer(mesh.WaypointIdentity(gw), gw.Namespace, gw.Namespace+"/"+gw.Name),
		}}
		routes = append(routes, route{via: waypoint[0].proxy, hops: slices.Concat(waypoint, last)})
	}
	for _, g := range ingresses {
		if g.Namespace == w.Namespace && g.Name == w.Name && g.Kind == w.Kind {
			continue // a gateway's own traffic comes in directly, not through itself
		}
		name := g.Name
		if gwName := g.Labels[mesh.GatewayNameLabel]; gwName != "" {
			name = gwName // the Gateway its Pods serve
		}
		aps := mesh.ForWorkload(g, root, st.AuthorizationPolicies)
		in := hop{
			proxy: "ingress " + g.Namespace + "/" + name,
			ras:   mesh.ForWorkload(g, root, st.RequestAuthentications),
			aps:   aps,
			// Clients reach an ingress gateway from outside the mesh, without mTLS.
			enforcement: dataplane.EnforcementOf(aps, true),
			// Pods are kept by their metadata: a gateway's service account is not known,
			// only that it calls from its namespace.
			forwardsAs: peer(dataplane.AnyOther, g.Namespace, dataplane.AnyOther),
		}
		hops := []hop{in}
		if gw != nil && ingressUsesWaypoint(st, w.Namespace, services) {
			hops = append(hops, waypoint...)
		}
		routes = append(routes, route{via: in.proxy, hops: append(hops, last...)})
	}
	return routes
}

// localHop is the proxy that takes a workload's inbound traffic: a gateway itself; ztunnel
// for an ambient workload, loading no RequestAuthentication and the L4 part of its
// policies; else the sidecar. None when nothing intercepts it.
func localHop(st State, root string, w *Workload) []hop {
	strict := mesh.MTLSStrict(st, root, w)
	aps := mesh.ForWorkload(w, root, st.AuthorizationPolicies)
	switch {
	case mesh.IsProxy(w):
		// A gateway is its own proxy, whatever its injection labels say.
		return []hop{{proxy: "gateway", ras: mesh.ForWorkload(w, root, st.RequestAuthentications), aps: aps, enforcement: dataplane.EnforcementOf(aps, true)}}
	case mesh.InAmbient(st, w):
		if w.Annotations[BypassInboundCaptureAnnotation] == "true" || w.Namespace == "kube-system" {
			return nil
		}
		return []hop{{proxy: "ztunnel", aps: aps, ztunnel: true, enforcement: dataplane.ZtunnelEnforcement(aps, !strict), mtlsStrict: strict}}
	case mesh.MeantForAmbient(st, w):
		return nil // on the host's network: ztunnel does not intercept it
	case mesh.LeavesAmbient(st.Settings(w.Namespace).NamespaceLabels, w):
		return nil // out of ambient mode, and no sidecar either
	}
	if field, _ := notEnforceable(w); field != "" || injectionDisabled(st, w) {
		return nil
	}
	mode, own := mesh.MTLSModes(st, root, w)
	return []hop{{proxy: "sidecar", ras: mesh.ForWorkload(w, root, st.RequestAuthentications), aps: aps, enforcement: dataplane.EnforcementOf(aps, !strict),
		mtlsStrict: mode == securityv1beta1.PeerAuthentication_MutualTLS_STRICT, strictPorts: mesh.StrictPorts(own, mode)}}
}

// ingressUsesWaypoint tells whether ingress traffic to the Services of namespace ns passes
// their waypoint: a Service, or the namespace, labelled istio.io/ingress-use-waypoint.
func ingressUsesWaypoint(st State, ns string, services []string) bool {
	if st.Settings(ns).NamespaceLabels[mesh.IngressUseWaypointLabel] == "true" {
		return true
	}
	return slices.ContainsFunc(st.Services(ns), func(svc *corev1.Service) bool {
		return slices.Contains(services, svc.Name) && svc.Labels[mesh.IngressUseWaypointLabel] == "true"
	})
}

// peer is the caller a proxy's mTLS presents: its principal, namespace and service account
// (namespace/name).
func peer(principal, namespace, serviceAccount string) request {
	return request{rulefields.PeerPrincipal: principal, rulefields.Namespace: namespace, rulefields.ServiceAccount: serviceAccount, rulefields.TrustDomain: mesh.TrustDomain}
}

// admits tells whether a request gets through every proxy of the route. A proxy without a
// RequestAuthentication validates no token, so it sees no token attribute; one that
// validates the token removes it before forwarding unless a rule keeps it
// (forwardOriginalToken), so the proxies after it see none either.
func (r route) admits(req request) bool {
	req = maps.Clone(req)
	for _, h := range r.hops {
		seen := req
		if len(h.ras) == 0 {
			seen = withoutToken(req)
		}
		if !h.enforcement.Admits(seen) {
			return false
		}
		if len(h.ras) > 0 && !forwardsToken(h.ras) {
			req = withoutToken(req)
		}
		maps.Copy(req, h.forwardsAs)
	}
	return true
}

// withoutToken returns req without its token's attributes.
func withoutToken(req request) request {
	out := maps.Clone(req)
	maps.DeleteFunc(out, func(attr, _ string) bool { return rulefields.IsJWT(attr) })
	return out
}

// forwardsToken tells whether a token validated by ras is forwarded: some rule keeps it.
func forwardsToken(ras []*RequestAuthentication) bool {
	return slices.ContainsFunc(ras, func(ra *RequestAuthentication) bool {
		return slices.ContainsFunc(ra.Spec.JwtRules, func(r *jwtRule) bool { return r.ForwardOriginalToken })
	})
}
