package dataplane

import (
	"slices"
	"strings"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// Protection is what guards one workload's JWT security, in one state: the policies of the
// proxy that validates its tokens on its routes (RoutesTo). For an ambient workload that
// is its waypoint (WaypointFor: none without one), for any other its sidecar or, for a
// gateway, itself (loaded). They are taken as that proxy loads them whether or not it
// intercepts the Pod: where nothing does, the routes have no hop and MG504 and MG813
// report the Pod, so that the other rules' findings still hold once it is intercepted.
type Protection struct {
	RAs []*mesh.RequestAuthentication
	APs []*mesh.AuthorizationPolicy
	// opening is worked out when first asked, and shared by the protection's copies; the
	// issuers too.
	opening *opening
}

// opening is a request with no token the workload admits on a path no policy names (nil
// when there is none), once evaluated.
type opening struct {
	st        mesh.State
	root      string
	w         *mesh.Workload
	evaluated bool
	witness   Request
	// viaWaypoint: the policies are a waypoint's, whose callers all come over mTLS.
	viaWaypoint bool
	// byPolicies shares what was evaluated between the workloads of one review that the
	// same policies, with mTLS alike, apply to: a mesh-wide policy's review asks of every
	// label set of the cluster, most under the same few policies.
	byPolicies map[openingKey]Request
	// kept, when set, keeps what is evaluated between reviews instead: the policies are
	// the AuthorizationPolicies keptAPs of one namespace (see namespacePolicies).
	kept    *namespacePolicies
	keptAPs uint64
	// namespaceMTLS, when set, is the mode of the workload's namespace, which no
	// PeerAuthentication with a selector changes for it: shared by such workloads.
	namespaceMTLS *mtlsOnce
	// issuers are those the RequestAuthentications configure, once each, in order, once
	// asked.
	issuers      []string
	issuersKnown bool
}

// mtlsOnce is whether mTLS is STRICT, once worked out.
type mtlsOnce struct{ known, strict bool }

// plaintext tells whether callers without mTLS reach the workload.
func (o *opening) plaintext() bool {
	if o.viaWaypoint {
		return false
	}
	m := o.namespaceMTLS
	if m == nil {
		return !mesh.MTLSStrict(o.st, o.root, o.w)
	}
	if !m.known {
		m.strict, m.known = mesh.MTLSStrict(o.st, o.root, o.w), true
	}
	return !m.strict
}

// openingKey names the policies that apply to a workload, and whether callers without
// mTLS reach it.
type openingKey struct {
	policies  string
	plaintext bool
}

func protectionOf(st mesh.State, root string, w *mesh.Workload, openings map[openingKey]Request) Protection {
	p := Protection{opening: &opening{st: st, root: root, w: w, byPolicies: openings}}
	// An ambient Pod's tokens are checked at its waypoint, and nowhere without one (MG801).
	// A workload yet to run (Virtual) is protected by what selects it: no Service is known
	// to bind it to a waypoint.
	if !w.Virtual && mesh.InAmbient(st, w) {
		at := WaypointFor(st, root, w)
		p.RAs, p.APs, p.opening.viaWaypoint = at.RAs, at.APs, true
	} else {
		p.RAs, p.APs = loaded(st, root, w)
	}
	return p
}

// issuersOf lists the issuers RequestAuthentications configure, once each, in order.
func issuersOf(ras []*mesh.RequestAuthentication) []string {
	var issuers []string
	for _, ra := range ras {
		for _, r := range ra.Spec.JwtRules {
			if !slices.Contains(issuers, r.Issuer) {
				issuers = append(issuers, r.Issuer)
			}
		}
	}
	return issuers
}

// ViaWaypoint tells whether the policies are a waypoint's, whose callers all come over
// mTLS.
func (p Protection) ViaWaypoint() bool { return p.opening.viaWaypoint }

// Verifies tells whether some RequestAuthentication validates tokens for the workload.
func (p Protection) Verifies() bool { return len(p.RAs) > 0 }

// Tokenless returns a request with no token, on a path no policy names, that the
// workload's AuthorizationPolicies admit, or nil when they turn every such request away;
// undecidedRequest when they name too many values to tell (see MaxRequestClasses).
func (p Protection) Tokenless() Request {
	o := p.opening
	if o.evaluated {
		return o.witness
	}
	plaintext := o.plaintext()
	var witness Request
	if o.kept != nil {
		witness = o.kept.opening(o.keptAPs, plaintext, p.APs)
	} else {
		key := openingKey{plaintext: plaintext}
		var names strings.Builder
		for _, ap := range p.APs {
			names.WriteString(ap.Namespace + "/" + ap.Name + "\n")
		}
		key.policies = names.String()
		known, ok := o.byPolicies[key]
		if !ok {
			known = EnforcementOf(p.APs, plaintext).TokenlessOpening()
			o.byPolicies[key] = known
		}
		witness = known
	}
	o.witness, o.evaluated = witness, true
	return witness
}

// TokenlessOn is tokenless for requests to each of ports of the workload: those on which
// one gets in, and such a request on the first of them.
func (p Protection) TokenlessOn(ports []string) (open []string, witness Request) {
	e := EnforcementOf(p.APs, p.opening.plaintext())
	for _, port := range ports {
		if found := e.TokenlessOpeningWith(Request{rulefields.Path: AnyPath, rulefields.Host: AnyOther, rulefields.Port: port}); found != nil {
			if open = append(open, port); witness == nil {
				witness = found
			}
		}
	}
	return open, witness
}

// AdmitsUnverified tells whether the workload admits some request without a verified
// token, on any path, from any caller: with no RequestAuthentication, whether anything
// gets in at all.
func (p Protection) AdmitsUnverified() bool {
	return EnforcementOf(p.APs, p.opening.plaintext()).AdmitsTokenless()
}

// Enforces tells whether the workload's AuthorizationPolicies turn away requests without
// a token: requests on paths no policy names, that is, everywhere but where a policy
// exempts named paths on purpose.
func (p Protection) Enforces() bool { return p.Tokenless() == nil }

// RequiresToken tells whether token-less requests are turned away: tokens are validated
// and an AuthorizationPolicy demands one.
func (p Protection) RequiresToken() bool { return p.Verifies() && p.Enforces() }

// Issuers lists the Issuers the workload's RequestAuthentications configure, once each.
// Callers must not modify it: it is shared by every rule of the review.
func (p Protection) Issuers() []string {
	if o := p.opening; !o.issuersKnown {
		o.issuers, o.issuersKnown = issuersOf(p.RAs), true
	}
	return p.opening.issuers
}
