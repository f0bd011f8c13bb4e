package products

import (
	"maps"
	"slices"
	"strings"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// Entry points a request comes from, in access maps; ingress gateways are "ingress
// ns/name", as routes name them.
const (
	// FromOutside: a caller without mTLS (outside the mesh, or a plaintext client).
	FromOutside = "outside the mesh"
	// FromMesh: a workload of the mesh, over mTLS, to a Service (through its waypoint
	// where it has one).
	FromMesh = "mesh workloads"
)

// What a request from an entry point needs to reach a workload.
const (
	NeedsNothing  = "nothing"  // a request with no token gets in
	NeedsToken    = "token"    // a token of Issuers, but on Exempt paths; or Identities
	NeedsIdentity = "identity" // one of Identities, over mTLS; no token opens it
	Refused       = "refused"  // nothing from there gets in: mTLS required, or every request denied
)

// Access is what a request from one entry point needs to reach a workload.
type Access struct {
	From       string   `json:"from"`
	Needs      string   `json:"needs"`
	Issuers    []string `json:"issuers,omitempty"`
	Audiences  []string `json:"audiences,omitempty"`
	Exempt     []string `json:"exempt,omitempty"`
	Identities []string `json:"identities,omitempty"`
	// Only, where a request with no token gets in on named paths alone and no token is
	// validated, are those paths.
	Only []string `json:"only,omitempty"`
}

// AccessTo tells what a request needs to reach workload w from outside the mesh (by the
// Pod's address, past any waypoint), from the mesh (to its Services, through their
// waypoint where they have one), and from each of ingresses, as Envoy and ztunnel would
// judge it on each route.
func AccessTo(st mesh.State, root string, w *mesh.Workload, ingresses []*mesh.Workload) []Access {
	routes := dataplane.RoutesTo(st, root, w, ingresses)
	mesh := routes[0]
	if len(routes) > 1 && strings.HasPrefix(routes[1].Via, "waypoint ") {
		mesh = routes[1]
	}
	out := []Access{accessBy(routes[0], FromOutside, withoutMTLS), accessBy(mesh, FromMesh, overMTLS)}
	for _, r := range routes[1:] {
		if strings.HasPrefix(r.Via, "ingress ") {
			out = append(out, accessBy(r, r.Via, withoutMTLS)) // clients of a gateway come from outside
		}
	}
	return out
}

func withoutMTLS(peer dataplane.Request) bool { _, ok := peer[rulefields.PeerPrincipal]; return !ok }
func overMTLS(peer dataplane.Request) bool    { return !withoutMTLS(peer) }

// accessBy is what a request from callers that keep accepts needs on route r.
func accessBy(r dataplane.Route, from string, keep func(dataplane.Request) bool) Access {
	a := Access{From: from, Needs: NeedsNothing}
	if len(r.Hops) == 0 {
		return a // nothing intercepts it
	}
	first := r.Hops[0]
	if first.MTLSStrict && keep(dataplane.Request{}) {
		a.Needs = Refused
		return a
	}
	peers := slices.DeleteFunc(first.Enforcement.Peers(), func(p dataplane.Request) bool { return !keep(p) })
	admitted := func(tokenless bool, peers []dataplane.Request) bool {
		found, decided := first.Enforcement.Find(dataplane.Request{rulefields.Path: dataplane.AnyPath, rulefields.Host: dataplane.AnyOther}, tokenless, peers, r.Admits)
		return found != nil || !decided
	}
	if found, decided := first.Enforcement.Find(dataplane.Request{}, false, peers, r.Admits); found == nil && decided {
		a.Needs = Refused
		return a
	}
	verdict, exempt := tokenRequirement(r, keep)
	if verdict == TokenOptional {
		return a
	}
	anonymous := slices.DeleteFunc(first.Enforcement.AnonymousPeers(), func(p dataplane.Request) bool { return !keep(p) })
	for _, p := range peers {
		if !slices.ContainsFunc(anonymous, func(q dataplane.Request) bool { return maps.Equal(p, q) }) && admitted(true, []dataplane.Request{p}) {
			a.Identities = append(a.Identities, dataplane.DescribeCaller(p))
		}
	}
	a.Exempt = exempt
	// The token a caller sends is the first proxy's to validate: the issuers it takes.
	// (One it validates goes on only if forwarded; a later proxy that requires one of
	// its own then refuses the request, which the evaluation above found.)
	for _, h := range r.Hops {
		if len(h.RAs) > 0 {
			a.Issuers, a.Audiences = tokensOf(h.RAs, nil, nil)
			break
		}
	}
	switch {
	case len(a.Issuers) > 0 && admitted(false, anonymous):
		a.Needs = NeedsToken
	case len(a.Identities) > 0:
		a.Needs, a.Issuers, a.Audiences = NeedsIdentity, nil, nil
	case len(exempt) > 0:
		a.Needs, a.Only, a.Exempt = NeedsNothing, exempt, nil
	default:
		a.Needs = Refused
	}
	return a
}

// ServicesOf names the Services of w's namespace whose selector selects it.
func ServicesOf(st mesh.State, w *mesh.Workload) []string {
	var out []string
	for svc := range mesh.ServicesSelecting(st, w) {
		out = append(out, svc.Name)
	}
	return out
}

// tokensOf adds to issuers and audiences those RequestAuthentications accept, once each.
func tokensOf(ras []*mesh.RequestAuthentication, issuers, audiences []string) ([]string, []string) {
	for _, ra := range ras {
		for _, jr := range ra.Spec.JwtRules {
			if !slices.Contains(issuers, jr.Issuer) {
				issuers = append(issuers, jr.Issuer)
			}
			for _, aud := range jr.Audiences {
				if !slices.Contains(audiences, aud) {
					audiences = append(audiences, aud)
				}
			}
		}
	}
	return issuers, audiences
}
