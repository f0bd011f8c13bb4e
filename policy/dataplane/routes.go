package dataplane

import (
	"maps"
	"slices"

	securityv1beta1 "istio.io/api/security/v1beta1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// Route is one way a request reaches a workload, and the proxies that enforce policy on
// the way, in order: straight to the workload, through the waypoint its Services are bound
// to, or in through an ingress gateway. Each proxy judges the request as it arrives there;
// one that forwards it passes it on under its own identity, the caller the next one sees.
type Route struct {
	// Via names the route: "direct", or the waypoint or gateway it passes, as "waypoint
	// ns/name" or "ingress ns/name".
	Via  string
	Hops []Hop
}

// Hop is one proxy of a route and what it enforces: its RequestAuthentications, and its
// AuthorizationPolicies as ztunnel translates them (L4 only) or as written.
type Hop struct {
	Proxy       string // sidecar, ztunnel, waypoint ns/name, ingress ns/name
	RAs         []*mesh.RequestAuthentication
	APs         []*mesh.AuthorizationPolicy
	Ztunnel     bool
	Enforcement Enforcement
	// MTLSStrict: callers without mTLS are refused before any policy; StrictPorts, where
	// set, say it of the ports a workload's own PeerAuthentication names. HBONEOnly: it is
	// so because the proxy takes HBONE only (a waypoint), not by a PeerAuthentication.
	MTLSStrict  bool
	StrictPorts map[string]bool
	HBONEOnly   bool
	// ForwardsAs is the caller the next hop sees; nil at the last hop.
	ForwardsAs Request
}

// RoutesTo returns the routes requests take to workload w: direct (pod-addressed, or the
// only one without a waypoint), through its waypoint, and from each gateway of ingresses
// but w itself.
// Ingress traffic goes straight to an ambient workload, past its waypoint, unless its
// Service or namespace asks for the waypoint (istio.io/ingress-use-waypoint). A route to
// a workload nothing intercepts has no hop.
func RoutesTo(st mesh.State, root string, w *mesh.Workload, ingresses []*mesh.Workload) []Route {
	last := localHop(st, root, w)
	routes := []Route{{Via: "direct", Hops: last}}
	var at Waypoint
	if mesh.InAmbient(st, w) {
		at = WaypointFor(st, root, w)
	}
	var waypoint []Hop
	if gw := at.Gateway; gw != nil {
		waypoint = []Hop{{
			Proxy:       "waypoint " + gw.Namespace + "/" + gw.Name,
			RAs:         at.RAs,
			APs:         at.APs,
			Enforcement: EnforcementOf(at.APs, false),
			MTLSStrict:  true,
			HBONEOnly:   true,
			ForwardsAs:  peer(mesh.WaypointIdentity(gw), gw.Namespace, gw.Namespace+"/"+gw.Name),
		}}
		routes = append(routes, Route{Via: waypoint[0].Proxy, Hops: slices.Concat(waypoint, last)})
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
		in := Hop{
			Proxy: "ingress " + g.Namespace + "/" + name,
			RAs:   mesh.ForWorkload(g, root, st.RequestAuthentications),
			APs:   aps,
			// Clients reach an ingress gateway from outside the mesh, without mTLS.
			Enforcement: EnforcementOf(aps, true),
			// Pods are kept by their metadata: a gateway's service account is not known,
			// only that it calls from its namespace.
			ForwardsAs: peer(AnyOther, g.Namespace, AnyOther),
		}
		hops := []Hop{in}
		if at.Gateway != nil && IngressUsesWaypoint(st, w.Namespace, at.Services) {
			hops = append(hops, waypoint...)
		}
		routes = append(routes, Route{Via: in.Proxy, Hops: append(hops, last...)})
	}
	return routes
}

// Waypoint is the waypoint that serves an ambient workload, the Services it serves the
// workload by, and what it enforces for it: the RequestAuthentications and
// AuthorizationPolicies attached to it or to those Services. Gateway is nil where no
// waypoint serves the workload; then nothing validates its tokens, as ztunnel loads no
// RequestAuthentication.
type Waypoint struct {
	Gateway  *mesh.Gateway
	Services []string
	RAs      []*mesh.RequestAuthentication
	APs      []*mesh.AuthorizationPolicy
}

// WaypointFor is the waypoint of ambient workload w: the hop of its waypoint route, and the
// proxy whose policies protect it.
func WaypointFor(st mesh.State, root string, w *mesh.Workload) Waypoint {
	gw, services := mesh.WaypointOf(st, w)
	return Waypoint{Gateway: gw, Services: services,
		RAs: mesh.AtWaypoint(root, w.Namespace, gw, services, st.RequestAuthentications),
		APs: mesh.AtWaypoint(root, w.Namespace, gw, services, st.AuthorizationPolicies)}
}

// loaded is what the proxy beside a workload loads for it, its sidecar or, for a gateway,
// itself: the RequestAuthentications and AuthorizationPolicies that select it.
func loaded(st mesh.State, root string, w *mesh.Workload) ([]*mesh.RequestAuthentication, []*mesh.AuthorizationPolicy) {
	return mesh.ForWorkload(w, root, st.RequestAuthentications), mesh.ForWorkload(w, root, st.AuthorizationPolicies)
}

// localHop is the proxy that takes a workload's inbound traffic: a gateway itself; ztunnel
// for an ambient workload, loading no RequestAuthentication and the L4 part of its
// policies; else the sidecar. None when nothing intercepts it.
func localHop(st mesh.State, root string, w *mesh.Workload) []Hop {
	switch {
	case mesh.IsProxy(w):
		// A gateway is its own proxy, whatever its injection labels say.
		ras, aps := loaded(st, root, w)
		return []Hop{{Proxy: "gateway", RAs: ras, APs: aps, Enforcement: EnforcementOf(aps, true)}}
	case mesh.MeantForAmbient(st, w):
		if path, _ := mesh.ZtunnelBypassed(w); path != nil {
			return nil
		}
		aps, strict := mesh.ForWorkload(w, root, st.AuthorizationPolicies), mesh.MTLSStrict(st, root, w)
		return []Hop{{Proxy: "ztunnel", APs: aps, Ztunnel: true, Enforcement: ZtunnelEnforcement(aps, !strict), MTLSStrict: strict}}
	case mesh.LeavesAmbient(st.Settings(w.Namespace).NamespaceLabels, w):
		return nil // out of ambient mode, and no sidecar either
	}
	if path, _ := mesh.NotEnforceable(w); path != nil || mesh.InjectionDisabled(st, w) {
		return nil
	}
	ras, aps := loaded(st, root, w)
	strict := mesh.MTLSStrict(st, root, w)
	mode, own := mesh.MTLSModes(st, root, w)
	return []Hop{{Proxy: "sidecar", RAs: ras, APs: aps, Enforcement: EnforcementOf(aps, !strict),
		MTLSStrict: mode == securityv1beta1.PeerAuthentication_MutualTLS_STRICT, StrictPorts: mesh.StrictPorts(own, mode)}}
}

// IngressUsesWaypoint tells whether ingress traffic to the Services of namespace ns passes
// their waypoint: a Service, or the namespace, labelled istio.io/ingress-use-waypoint.
func IngressUsesWaypoint(st mesh.State, ns string, services []string) bool {
	if st.Settings(ns).NamespaceLabels[mesh.IngressUseWaypointLabel] == "true" {
		return true
	}
	return slices.ContainsFunc(st.Services(ns), func(svc *corev1.Service) bool {
		return slices.Contains(services, svc.Name) && svc.Labels[mesh.IngressUseWaypointLabel] == "true"
	})
}

// peer is the caller a proxy's mTLS presents: its principal, namespace and service account
// (namespace/name).
func peer(principal, namespace, serviceAccount string) Request {
	return Request{rulefields.PeerPrincipal: principal, rulefields.Namespace: namespace, rulefields.ServiceAccount: serviceAccount, rulefields.TrustDomain: mesh.TrustDomain}
}

// Admits tells whether a request gets through every proxy of the route. A proxy without a
// RequestAuthentication validates no token, so it sees no token attribute; one that
// validates the token removes it before forwarding unless a rule keeps it
// (forwardOriginalToken), so the proxies after it see none either.
func (r Route) Admits(req Request) bool {
	req = maps.Clone(req)
	for _, h := range r.Hops {
		seen := req
		if len(h.RAs) == 0 {
			seen = withoutToken(req)
		}
		if !h.Enforcement.Admits(seen) {
			return false
		}
		if len(h.RAs) > 0 && !ForwardsToken(h.RAs) {
			req = withoutToken(req)
		}
		maps.Copy(req, h.ForwardsAs)
	}
	return true
}

// withoutToken returns req without its token's attributes.
func withoutToken(req Request) Request {
	out := maps.Clone(req)
	maps.DeleteFunc(out, func(attr, _ string) bool { return rulefields.IsJWT(attr) })
	return out
}

// ForwardsToken tells whether a token validated by ras is forwarded: some rule keeps it.
func ForwardsToken(ras []*mesh.RequestAuthentication) bool {
	return slices.ContainsFunc(ras, func(ra *mesh.RequestAuthentication) bool {
		return slices.ContainsFunc(ra.Spec.JwtRules, func(r *securityv1beta1.JWTRule) bool { return r.ForwardOriginalToken })
	})
}
