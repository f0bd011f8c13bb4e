package conformance

import (
	"net/netip"
	"strings"

	securityclient "istio.io/client-go/pkg/apis/security/v1"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/serviceregistry/ambient"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/kube/krt"
	"istio.io/istio/pkg/workloadapi/security"
)

// ztunnelPolicies are the Authorizations istiod sends ztunnel for the AuthorizationPolicies
// (ambient.PolicyCollections, the ambient index's own conversion), and which of them apply
// to a workload of namespace ns with labels: the mesh's and its namespace's without a
// selector, and those of its namespace or the root namespace whose selector it matches.
func ztunnelPolicies(aps []*securityclient.AuthorizationPolicy, ns string, workloadLabels map[string]string) []*security.Authorization {
	stop := make(chan struct{})
	defer close(stop)
	opts := krt.NewOptionsBuilder(stop, "conformance", krt.GlobalDebugHandler)
	policies := krt.NewStaticCollection[*securityclient.AuthorizationPolicy](nil, aps, opts.WithName("AuthorizationPolicies")...)
	peerAuths := krt.NewStaticCollection[*securityclient.PeerAuthentication](nil, nil, opts.WithName("PeerAuthentications")...)
	waypoints := krt.NewStaticCollection[ambient.Waypoint](nil, nil, opts.WithName("Waypoints")...)
	meshConfig := krt.NewStatic[ambient.MeshConfig](&ambient.MeshConfig{MeshConfig: mesh.DefaultMeshConfig()}, true)
	_, all := ambient.PolicyCollections(policies, peerAuths, meshConfig, waypoints, opts, ambient.FeatureFlags{})
	all.WaitUntilSynced(stop)
	var out []*security.Authorization
	for _, wa := range all.List() {
		a := wa.Authorization
		if a == nil {
			continue
		}
		switch a.GetScope() {
		case security.Scope_GLOBAL:
		case security.Scope_NAMESPACE:
			if a.GetNamespace() != ns {
				continue
			}
		case security.Scope_WORKLOAD_SELECTOR:
			if a.GetNamespace() != ns && a.GetNamespace() != rootNamespace || !selects(wa.LabelSelector, workloadLabels) {
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

func selects(s model.LabelSelector, workloadLabels map[string]string) bool {
	for k, v := range s.Labels {
		if workloadLabels[k] != v {
			return false
		}
	}
	return true
}

// connection is a connection as ztunnel sees it at the destination.
type connection struct {
	// identity is the caller's, spiffe://td/ns/N/sa/S; "" without mTLS.
	identity string
	source   string
	port     uint32
}

// ztunnelAllows is ztunnel's verdict (src/state.rs assert_rbac): refused when an enforced
// DENY policy matches; else allowed when no ALLOW policy applies, or one matches.
func ztunnelAllows(policies []*security.Authorization, c connection) bool {
	allows, allowed := false, false
	for _, p := range policies {
		if p.GetDryRun() {
			continue
		}
		switch p.GetAction() {
		case security.Action_DENY:
			if authorizationMatches(p, c) {
				return false
			}
		case security.Action_ALLOW:
			allows = true
			allowed = allowed || authorizationMatches(p, c)
		}
	}
	return !allows || allowed
}

// authorizationMatches is ztunnel's Authorization::matches (src/rbac.rs): some group whose
// rules all hold, a rule holding when one of its matches does (a rule of no match always;
// an empty match never), a match when every field does; a policy of no group never.
func authorizationMatches(p *security.Authorization, c connection) bool {
	ns, sa := "", ""
	if rest, ok := strings.CutPrefix(c.identity, "spiffe://"); ok {
		if parts := strings.Split(rest, "/"); len(parts) == 5 && parts[1] == "ns" && parts[3] == "sa" {
			ns, sa = parts[2], parts[4]
		}
	}
	for _, group := range p.GetGroups() {
		all := true
		for _, rule := range group.GetRules() {
			if len(rule.GetMatches()) == 0 {
				continue
			}
			some := false
			for _, m := range rule.GetMatches() {
				if !isEmptyMatch(m) && matchHolds(m, c, ns, sa) {
					some = true
					break
				}
			}
			if !some {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func isEmptyMatch(m *security.Match) bool {
	return len(m.GetNamespaces())+len(m.GetNotNamespaces())+len(m.GetServiceAccounts())+len(m.GetNotServiceAccounts())+
		len(m.GetPrincipals())+len(m.GetNotPrincipals())+len(m.GetSourceIps())+len(m.GetNotSourceIps())+
		len(m.GetDestinationIps())+len(m.GetNotDestinationIps())+len(m.GetDestinationPorts())+len(m.GetNotDestinationPorts()) == 0
}

// matchHolds: each field, positive values any, negative values none.
func matchHolds(m *security.Match, c connection, ns, sa string) bool {
	principal := func(s *security.StringMatch) bool {
		rest, ok := strings.CutPrefix(c.identity, "spiffe://")
		return ok && stringMatchHolds(s, rest)
	}
	namespace := func(s *security.StringMatch) bool { return stringMatchHolds(s, ns) }
	account := func(s *security.ServiceAccountMatch) bool {
		return c.identity != "" && s.GetNamespace() == ns && s.GetServiceAccount() == sa
	}
	source := func(a *security.Address) bool { return addressHolds(a, c.source) }
	port := func(p uint32) bool { return p == c.port }
	return holds(m.GetPrincipals(), m.GetNotPrincipals(), principal) && holds(m.GetNamespaces(), m.GetNotNamespaces(), namespace) &&
		holds(m.GetServiceAccounts(), m.GetNotServiceAccounts(), account) && holds(m.GetSourceIps(), m.GetNotSourceIps(), source) &&
		holds(m.GetDestinationPorts(), m.GetNotDestinationPorts(), port) && len(m.GetDestinationIps())+len(m.GetNotDestinationIps()) == 0
}

func holds[T any](positive, negative []T, match func(T) bool) bool {
	some := func(list []T) bool {
		for _, v := range list {
			if match(v) {
				return true
			}
		}
		return false
	}
	return (len(positive) == 0 || some(positive)) && (len(negative) == 0 || !some(negative))
}

func stringMatchHolds(s *security.StringMatch, v string) bool {
	switch m := s.GetMatchType().(type) {
	case *security.StringMatch_Exact:
		return v == m.Exact
	case *security.StringMatch_Prefix:
		return strings.HasPrefix(v, m.Prefix)
	case *security.StringMatch_Suffix:
		return strings.HasSuffix(v, m.Suffix)
	case *security.StringMatch_Presence:
		return v != ""
	}
	return false // ztunnel drops a match of no type
}

func addressHolds(a *security.Address, v string) bool {
	addr, err := netip.ParseAddr(v)
	if err != nil {
		return false
	}
	base, ok := netip.AddrFromSlice(a.GetAddress())
	if !ok {
		return false
	}
	prefix, err := base.Unmap().Prefix(int(a.GetLength()))
	return err == nil && prefix.Contains(addr)
}
