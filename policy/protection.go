package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// protection is what guards one workload's JWT security, in one state.
type protection struct {
	RAs []*RequestAuthentication
	APs []*AuthorizationPolicy
	// opening is worked out when first asked, and shared by the protection's copies; the
	// issuers too.
	opening *opening
}

// opening is a request with no token the workload admits on a path no policy names (nil
// when there is none), once evaluated.
type opening struct {
	st        State
	root      string
	w         *Workload
	evaluated bool
	witness   request
	// viaWaypoint: the policies are a waypoint's, whose callers all come over mTLS.
	viaWaypoint bool
	// byPolicies shares what was evaluated between the workloads of one review that the
	// same policies, with mTLS alike, apply to: a mesh-wide policy's review asks of every
	// label set of the cluster, most under the same few policies.
	byPolicies map[openingKey]request
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

func protectionOf(st State, root string, w *Workload, openings map[openingKey]request) protection {
	p := protection{
		RAs:     mesh.ForWorkload(w, root, st.RequestAuthentications),
		APs:     mesh.ForWorkload(w, root, st.AuthorizationPolicies),
		opening: &opening{st: st, root: root, w: w, byPolicies: openings},
	}
	// An ambient Pod's tokens are checked at its waypoint, by the policies attached to it,
	// and nowhere without one: ztunnel loads no RequestAuthentication (MG801).
	if !w.Virtual && mesh.InAmbient(st, w) {
		gw, services := mesh.WaypointOf(st, w)
		p.RAs = mesh.AtWaypoint(root, w.Namespace, gw, services, st.RequestAuthentications)
		p.APs = mesh.AtWaypoint(root, w.Namespace, gw, services, st.AuthorizationPolicies)
		p.opening.viaWaypoint = true
	}
	return p
}

// issuersOf lists the issuers RequestAuthentications configure, once each, in order.
func issuersOf(ras []*RequestAuthentication) []string {
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
func (p protection) ViaWaypoint() bool { return p.opening.viaWaypoint }

// Verifies tells whether some RequestAuthentication validates tokens for the workload.
func (p protection) Verifies() bool { return len(p.RAs) > 0 }

// Tokenless returns a request with no token, on a path no policy names, that the
// workload's AuthorizationPolicies admit, or nil when they turn every such request away;
// undecidedRequest when they name too many values to tell (see dataplane.MaxRequestClasses).
func (p protection) Tokenless() request {
	o := p.opening
	if o.evaluated {
		return o.witness
	}
	plaintext := o.plaintext()
	var witness request
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
			known = dataplane.EnforcementOf(p.APs, plaintext).TokenlessOpening()
			o.byPolicies[key] = known
		}
		witness = known
	}
	o.witness, o.evaluated = witness, true
	return witness
}

// TokenlessOn is tokenless for requests to each of ports of the workload: those on which
// one gets in, and such a request on the first of them.
func (p protection) TokenlessOn(ports []string) (open []string, witness request) {
	e := dataplane.EnforcementOf(p.APs, p.opening.plaintext())
	for _, port := range ports {
		if found := e.TokenlessOpeningWith(request{rulefields.Path: dataplane.AnyPath, rulefields.Host: dataplane.AnyOther, rulefields.Port: port}); found != nil {
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
func (p protection) AdmitsUnverified() bool {
	return dataplane.EnforcementOf(p.APs, p.opening.plaintext()).AdmitsTokenless()
}

// Enforces tells whether the workload's AuthorizationPolicies turn away requests without
// a token: requests on paths no policy names, that is, everywhere but where a policy
// exempts named paths on purpose.
func (p protection) Enforces() bool { return p.Tokenless() == nil }

// RequiresToken tells whether token-less requests are turned away: tokens are validated
// and an AuthorizationPolicy demands one.
func (p protection) RequiresToken() bool { return p.Verifies() && p.Enforces() }

// Issuers lists the Issuers the workload's RequestAuthentications configure, once each.
// Callers must not modify it: it is shared by every rule of the review.
func (p protection) Issuers() []string {
	if o := p.opening; !o.issuersKnown {
		o.issuers, o.issuersKnown = issuersOf(p.RAs), true
	}
	return p.opening.issuers
}

// describe names workloads for messages: a few by name, or what a virtual one stands for,
// in Istio's terms (a policy of the root namespace covers the mesh), never by the labels
// meshguard gives virtual workloads.
func (c *Context) describe(ws []*Workload) string {
	if len(ws) == 1 && ws[0].Virtual {
		w := ws[0]
		where := "namespace " + w.Namespace
		if w.Namespace == c.Settings.Root {
			where = "the mesh (root namespace " + w.Namespace + ")"
		}
		switch {
		case w.Labels[mesh.TargetLabel] != "":
			kind, name, _ := strings.Cut(w.Labels[mesh.TargetLabel], ".")
			return fmt.Sprintf("the workloads behind %s %s/%s, through its waypoint", kind, w.Namespace, name)
		case w.Labels[mesh.GatewayNameLabel] != "":
			return fmt.Sprintf("the Pods of Gateway %s/%s", w.Namespace, w.Labels[mesh.GatewayNameLabel])
		case len(w.Labels) == 0:
			return "every workload of " + where
		}
		return fmt.Sprintf("workloads labelled %s in %s", labelString(w.Labels), where)
	}
	// The first by name: the order a cache lists workloads in differs between replicas and
	// passes, and a message must not (the audit rewrites a report whose message changed).
	// A mesh-wide policy names 100,000 of them: the first few are picked, not all sorted.
	const shown = 3
	byName := func(a, b *Workload) int {
		if c := cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(namespaceOf(a), namespaceOf(b))); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	}
	var first []*Workload
	for _, w := range ws {
		i, _ := slices.BinarySearchFunc(first, w, byName)
		if i < shown {
			first = slices.Insert(first, i, w)[:min(len(first)+1, shown)]
		}
	}
	var names []string
	for _, w := range first {
		names = append(names, fmt.Sprintf("%s %s/%s", w.Kind, w.Namespace, w.Name))
	}
	if len(ws) > shown {
		names = append(names, fmt.Sprintf("%d more", len(ws)-shown))
	}
	return strings.Join(names, ", ")
}

func labelString(l map[string]string) string {
	var parts []string
	for _, k := range mesh.SortedKeys(l) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}

// lacking returns the workloads of a policy for which bad holds.
func lacking(ws []*Workload, bad func(w *Workload) bool) []*Workload {
	var out []*Workload
	for _, w := range ws {
		if bad(w) {
			out = append(out, w)
		}
	}
	return out
}
