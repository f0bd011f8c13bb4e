package products

import (
	"maps"
	"slices"
	"strings"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
)

// ProxyEnforcement is what one proxy on the way to a workload enforces, as the data plane
// model reads istiod's translation for it: whether it refuses callers without mTLS, the
// RequestAuthentications it loads, and each rule of the AuthorizationPolicies it
// receives, as it receives it. It is what Explain evaluates a request against.
type ProxyEnforcement struct {
	// Proxy is "sidecar", "ztunnel", "gateway", "waypoint ns/name" or "ingress ns/name".
	Proxy string `json:"proxy"`
	// Routes are the routes to the workload the proxy is on (Explanation.Route's names).
	Routes                 []string       `json:"routes"`
	MTLS                   string         `json:"mtls"`
	RequestAuthentications []string       `json:"requestAuthentications,omitempty"`
	Rules                  []EnforcedRule `json:"rules,omitempty"`
}

// EnforcedRule is one rule of an AuthorizationPolicy as a proxy receives it.
type EnforcedRule struct {
	Policy string `json:"policy"` // namespace/name
	Action string `json:"action"`
	DryRun bool   `json:"dryRun,omitempty"`
	Rule   int    `json:"rule"`
	// Matches is the rule as the proxy matches it: its from and to entries, ORed, each of
	// conditions ANDed, and its when conditions.
	Matches string `json:"matches,omitempty"`
	// Skipped says why the proxy does not enforce the rule.
	Skipped string `json:"skipped,omitempty"`
}

// EnforcementAt lists the proxies on the routes to workload w and what each enforces, in
// the order a request meets them: ingress gateways, the waypoint, then the workload's own
// proxy (its sidecar or ztunnel, or the gateway itself).
func EnforcementAt(st mesh.State, root string, w *mesh.Workload) []ProxyEnforcement {
	var out []ProxyEnforcement
	at := map[string]int{}
	for _, r := range dataplane.RoutesTo(st, root, w, IngressGateways(st, "")) {
		for _, h := range r.Hops {
			if i, seen := at[h.Proxy]; seen {
				out[i].Routes = append(out[i].Routes, r.Via)
				continue
			}
			at[h.Proxy] = len(out)
			out = append(out, enforcedAt(h, r.Via))
		}
	}
	// Ingress gateways first, then the waypoint, then the workload's own proxy.
	order := func(p ProxyEnforcement) int {
		switch {
		case strings.HasPrefix(p.Proxy, "ingress "):
			return 0
		case strings.HasPrefix(p.Proxy, "waypoint "):
			return 1
		}
		return 2
	}
	slices.SortStableFunc(out, func(a, b ProxyEnforcement) int { return order(a) - order(b) })
	return out
}

// enforcedAt is what the proxy of h enforces on the route via.
func enforcedAt(h dataplane.Hop, via string) ProxyEnforcement {
	p := ProxyEnforcement{Proxy: h.Proxy, Routes: []string{via}, MTLS: mtlsOf(h)}
	for _, ra := range h.RAs {
		p.RequestAuthentications = append(p.RequestAuthentications, ra.Namespace+"/"+ra.Name)
	}
	for _, ap := range h.APs {
		for i, r := range ap.Spec.Rules {
			e := EnforcedRule{Policy: ap.Namespace + "/" + ap.Name, Action: ap.Spec.Action.String(), DryRun: dataplane.IsDryRun(ap), Rule: i}
			if c, skipped := dataplane.Receive(h.Ztunnel, ap, r); skipped != "" {
				e.Skipped = skipped
			} else {
				e.Matches = c.String()
			}
			p.Rules = append(p.Rules, e)
		}
	}
	return p
}

// mtlsOf says which callers the proxy of h takes before any policy: with mTLS only, or also
// without it, and on which ports a workload's own PeerAuthentication says otherwise.
func mtlsOf(h dataplane.Hop) string {
	mode := "mTLS or plaintext"
	switch {
	case h.HBONEOnly:
		mode = "HBONE (mTLS) only"
	case h.MTLSStrict:
		mode = "mTLS only (STRICT)"
	}
	for _, port := range slices.Sorted(maps.Keys(h.StrictPorts)) {
		if h.StrictPorts[port] {
			mode += "; port " + port + " mTLS only"
		} else {
			mode += "; port " + port + " mTLS or plaintext"
		}
	}
	return mode
}
