package products

import (
	"slices"
	"strings"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// Protection verdicts of a workload, from best to worst.
const (
	// Protected: a token is required on every path, from every caller.
	Protected = "protected"
	// Partial: a token is required but on named paths (a health check, /login).
	Partial = "partial"
	// Locked: every request is denied.
	Locked = "locked"
	// TokenOptional: policies apply, and a request without a token gets in on a path no
	// policy names.
	TokenOptional = "token-optional"
	// Open: no policy applies at all.
	Open = "open"
	// NotEnforced: no proxy applies the workload's policies.
	NotEnforced = "not-enforced"
)

// Exposure ranks verdicts for --fail-on: 0 for protected or locked, 1 partial, 2
// token-optional, 3 open or not enforced.
func Exposure(verdict string) int {
	return map[string]int{Partial: 1, TokenOptional: 2, Open: 3, NotEnforced: 3}[verdict]
}

// WorkloadCoverage is how one workload is protected.
type WorkloadCoverage struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// EnforcedBy are the proxies on the route Istio takes to it (through its waypoint where
	// it has one).
	EnforcedBy []string `json:"enforcedBy"`
	Issuers    []string `json:"issuers"`
	Audiences  []string `json:"audiences"`
	Verdict    string   `json:"verdict"`
	// Exempt are the paths a request without a token gets in on, where it does on none
	// other.
	Exempt []string `json:"exempt"`
	// Rules are the IDs of the findings on the workload and its policies (filled by the
	// caller, which judged them).
	Rules []string `json:"rules"`
	// Services select it; Access tells what a request needs to reach it from each entry
	// point (filled by callers that draw access maps, AccessTo).
	Services []string `json:"services,omitempty"`
	Access   []Access `json:"access,omitempty"`
	// Policies are the RequestAuthentications and AuthorizationPolicies its proxies apply.
	Policies []PolicyRef `json:"-"`
}

// CoverageOf tells how workload w is protected: the proxies that enforce its policies, the
// issuers and audiences they accept, and whether a request without a token gets in.
func CoverageOf(st mesh.State, root string, w *mesh.Workload) WorkloadCoverage {
	c := WorkloadCoverage{Kind: w.Kind, Namespace: w.Namespace, Name: w.Name, EnforcedBy: []string{}, Issuers: []string{}, Audiences: []string{}, Exempt: []string{}, Rules: []string{}}
	routes := dataplane.RoutesTo(st, root, w, nil)
	r := routes[0]
	if len(routes) > 1 {
		r = routes[1] // through the waypoint, as Service traffic goes
	}
	if len(r.Hops) == 0 {
		c.Verdict = NotEnforced
		return c
	}
	var ras []*mesh.RequestAuthentication
	var aps []*mesh.AuthorizationPolicy
	for _, h := range r.Hops {
		c.EnforcedBy = append(c.EnforcedBy, h.Proxy)
		ras, aps = append(ras, h.RAs...), append(aps, h.APs...)
		c.Policies = append(c.Policies, policiesOf(h)...)
	}
	c.Issuers, c.Audiences = tokensOf(ras, c.Issuers, c.Audiences)
	switch {
	case len(ras) == 0 && mesh.InAmbient(st, w) && len(mesh.ForWorkload(w, root, st.RequestAuthentications)) > 0:
		// Its RequestAuthentications select it, and no proxy loads them (MG801): its JWT
		// policies are enforced nowhere.
		c.Verdict = NotEnforced
	case len(ras) == 0 && len(aps) == 0:
		c.Verdict = Open
	case !admitsAnything(r):
		c.Verdict = Locked
	case len(ras) == 0:
		c.Verdict = TokenOptional // nothing validates a token: none is ever required
	default:
		c.Verdict, c.Exempt = tokenRequirement(r, anyCaller)
	}
	return c
}

// admitsAnything tells whether some request, with or without a token, gets through r.
func admitsAnything(r dataplane.Route) bool {
	first := r.Hops[0].Enforcement
	peers := first.Peers()
	found, decided := first.Find(dataplane.Request{}, false, peers, func(req dataplane.Request) bool { return r.Admits(req) })
	return found != nil || !decided
}

// tokenRequirement tells whether a request without a token gets through route r: on a
// path no policy names (token-optional), only on named paths (partial, with those paths),
// or nowhere (protected). The callers tried are each hop's anonymous ones that keep
// (every one, for coverage).
func tokenRequirement(r dataplane.Route, keep func(peer dataplane.Request) bool) (string, []string) {
	tokenless := func(path string) bool {
		for _, h := range r.Hops {
			e := h.Enforcement
			fixed := dataplane.Request{rulefields.Path: path, rulefields.Host: dataplane.AnyOther}
			peers := slices.DeleteFunc(e.AnonymousPeers(), func(p dataplane.Request) bool { return !keep(p) })
			if len(peers) == 0 {
				continue
			}
			// Undecided counts as admitted: meshguard never calls protected what it cannot tell.
			if found, decided := e.Find(fixed, true, peers, func(req dataplane.Request) bool { return r.Admits(req) }); found != nil || !decided {
				return true
			}
		}
		return false
	}
	if tokenless(dataplane.AnyPath) {
		return TokenOptional, []string{}
	}
	exempt := []string{}
	for _, h := range r.Hops {
		for _, c := range h.Enforcement.Conditions() {
			if c.Attr != rulefields.Path {
				continue
			}
			for _, p := range slices.Concat(c.Values, c.NotValues) {
				if v := dataplane.Representative(p); v != "" && !slices.Contains(exempt, p) && tokenless(v) {
					exempt = append(exempt, p)
				}
			}
		}
	}
	if len(exempt) > 0 {
		slices.Sort(exempt)
		return Partial, exempt
	}
	return Protected, exempt
}

// anyCaller keeps every caller.
func anyCaller(dataplane.Request) bool { return true }

// Covered lists the workloads CoverageOf judges in a state: every Pod and pod template but
// Istio's own proxies and control plane, of namespace ns or of all ("").
func Covered(st mesh.State, ns string) []*mesh.Workload {
	root := st.Settings("").Root
	return mesh.WorkloadsWhere(st.Workloads(ns, nil), func(w *mesh.Workload) bool {
		return !mesh.IsProxy(w) && !controlPlane(w, root) && !strings.HasPrefix(w.Namespace, "kube-")
	})
}

// IngressGateways are the Pods (or pod templates) of Istio's ingress gateways, of namespace
// ns or of all (""): its proxies but the waypoints, egress and east-west gateways, which
// take no request from outside the mesh to check.
func IngressGateways(st mesh.State, ns string) []*mesh.Workload {
	return mesh.WorkloadsWhere(st.Workloads(ns, nil), func(w *mesh.Workload) bool {
		istio := w.Labels["istio"]
		return mesh.IsProxy(w) && !mesh.IsWaypoint(w.Labels) && !strings.Contains(istio, "egress") && !strings.Contains(istio, "eastwest")
	})
}

// controlPlane tells whether a workload is one of Istio's control plane, in the root
// namespace, which no tenant writes: istiod, ztunnel and the CNI node agent take no
// requests a JWT policy is for.
func controlPlane(w *mesh.Workload, root string) bool {
	if w.Namespace != root {
		return false
	}
	switch w.Labels["app"] {
	case "istiod", "ztunnel", "istio-cni-node":
		return true
	}
	return w.Labels["k8s-app"] == "istio-cni-node"
}
