// Package products answers users' questions of the mesh as its proxies would: how a
// request fares on its way to a workload (Explain), what protects each workload
// (CoverageOf), who may reach it and with what (AccessTo), and what each proxy on the
// routes to it enforces (EnforcementAt). It reads the data plane and the mesh model; the
// rules' findings are joined to its answers by the front doors.
package products

import (
	"fmt"
	"slices"
	"strings"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// Request is one request to explain, as it leaves its caller.
type Request struct {
	Method, Path, Host, Port string
	// Headers are the request's headers, by lower-case name (when keys request.headers[...]).
	Headers map[string]string
	// Token is the JWT the request carries; nil for none.
	Token *dataplane.Token
	// FromPrincipal is the caller's mTLS identity (cluster.local/ns/X/sa/Y); "" for a
	// caller without mTLS, which has no namespace either.
	FromPrincipal string
	FromIP        string
}

// Explanation is a request's verdict, and why: what each proxy on its path did.
type Explanation struct {
	Verdict dataplane.Verdict `json:"verdict"`
	// Status is the HTTP status the caller gets; nil where none (undetermined, or a
	// connection refused).
	Status *int `json:"status"`
	// DecidedBy names what decided, as Envoy logs an AuthorizationPolicy's rule
	// (ns[NS]-policy[NAME]-rule[I]), or the token check or PeerAuthentication.
	DecidedBy string `json:"decidedBy"`
	// Route is the path taken: direct, or the waypoint or ingress gateway passed.
	Route string               `json:"route"`
	Path  []dataplane.HopTrace `json:"path"`
	// Shadow is what the policies in dry run would decide, where any applies.
	Shadow *dataplane.Shadow `json:"shadow,omitempty"`
	// Objects are the RequestAuthentications and AuthorizationPolicies on the path.
	Objects []PolicyRef `json:"-"`
}

// PolicyRef names a policy.
type PolicyRef struct {
	Kind, Namespace, Name string
}

// policiesOf names the RequestAuthentications and AuthorizationPolicies the proxy of h applies.
func policiesOf(h dataplane.Hop) []PolicyRef {
	var out []PolicyRef
	for _, ra := range h.RAs {
		out = append(out, PolicyRef{mesh.KindRequestAuthentication, ra.Namespace, ra.Name})
	}
	for _, ap := range h.APs {
		out = append(out, PolicyRef{mesh.KindAuthorizationPolicy, ap.Namespace, ap.Name})
	}
	return out
}

// Routes to a workload Explain follows.
const (
	ViaDefault  = ""
	ViaDirect   = "direct"
	ViaWaypoint = "waypoint"
	ViaIngress  = "gateway"
)

// Explain follows a request to workload w along a route: direct (pod-addressed), through
// its waypoint, or in through an ingress gateway; by default the route Istio takes for
// traffic to its Service (through the waypoint where there is one). Each proxy on it
// checks the token against its RequestAuthentications, then evaluates its
// AuthorizationPolicies as Envoy does: CUSTOM, then DENY, then ALLOW.
func Explain(st mesh.State, root string, w *mesh.Workload, via string, req Request) (*Explanation, error) {
	routes := dataplane.RoutesTo(st, root, w, IngressGateways(st, ""))
	pick := func(prefix string) *dataplane.Route {
		i := slices.IndexFunc(routes, func(r dataplane.Route) bool { return strings.HasPrefix(r.Via, prefix) })
		if i < 0 {
			return nil
		}
		return &routes[i]
	}
	var r *dataplane.Route
	switch via {
	case ViaDefault:
		if r = pick("waypoint "); r == nil {
			r = pick(ViaDirect)
		}
	case ViaDirect:
		r = pick(ViaDirect)
	case ViaWaypoint:
		r = pick("waypoint ")
	case ViaIngress:
		r = pick("ingress ")
	default:
		return nil, fmt.Errorf("route %q: want %s, %s or %s", via, ViaDirect, ViaWaypoint, ViaIngress)
	}
	if r == nil {
		return nil, fmt.Errorf("no %s route to %s %s/%s: %s", via, w.Kind, w.Namespace, w.Name, noRoute(via))
	}
	e := &Explanation{Route: r.Via}
	if len(r.Hops) == 0 {
		e.Verdict, e.Status, e.DecidedBy = dataplane.VerdictAllow, status(200), "no proxy intercepts the workload's inbound traffic: nothing is enforced"
		return e, nil
	}
	attrs := requestAttributes(req)
	token := req.Token
	e.Verdict = dataplane.VerdictAllow
	var shadow *dataplane.Shadow
	for _, h := range r.Hops {
		trace, verdict, decided, hopShadow := dataplane.ExplainHop(h, attrs, token)
		e.Path = append(e.Path, trace)
		e.Objects = append(e.Objects, policiesOf(h)...)
		if hopShadow != nil && (shadow == nil || shadow.Verdict == dataplane.VerdictAllow) {
			shadow = hopShadow
		}
		switch verdict {
		case dataplane.VerdictDeny, dataplane.VerdictUnauthenticated:
			e.Verdict, e.DecidedBy = verdict, decided
			e.Status = map[dataplane.Verdict]*int{dataplane.VerdictDeny: status(403), dataplane.VerdictUnauthenticated: status(401)}[verdict]
			if strings.HasPrefix(decided, dataplane.RefusedConnection) || h.Ztunnel {
				// The connection is refused, or ztunnel resets it: no HTTP answer.
				e.Status = nil
			}
			e.Shadow = shadow
			return e, nil
		case dataplane.VerdictUndetermined:
			e.Verdict, e.DecidedBy = verdict, decided
		case dataplane.VerdictAllow:
			if e.Verdict == dataplane.VerdictAllow {
				e.DecidedBy = decided
			}
		}
		// The next proxy sees this one as the caller, and the token only if kept.
		if h.ForwardsAs != nil {
			attrs = dataplane.WithPeer(attrs, h.ForwardsAs)
		}
		if len(h.RAs) > 0 && !dataplane.ForwardsToken(h.RAs) {
			token = nil
		}
	}
	if e.Verdict == dataplane.VerdictAllow {
		e.Status = status(200)
	}
	e.Shadow = shadow
	return e, nil
}

func status(code int) *int { return &code }

func noRoute(via string) string {
	switch via {
	case ViaWaypoint:
		return "no waypoint takes its Services' traffic"
	case ViaIngress:
		return "no ingress gateway is known (add its Deployment or Pods)"
	}
	return "none known"
}

// requestAttributes are the attributes of a request as its first proxy sees them, values
// per attribute (a claim may have several). The token's are set by the proxy that
// validates it.
func requestAttributes(req Request) map[string][]string {
	attrs := map[string][]string{}
	set := func(attr, v string) {
		if v != "" {
			attrs[attr] = []string{v}
		}
	}
	set(rulefields.Method, req.Method)
	set(rulefields.Path, normalizedPath(req.Path))
	set(rulefields.Host, req.Host)
	set(rulefields.Port, req.Port)
	set(rulefields.SourceIP, req.FromIP)
	set(rulefields.RemoteIP, req.FromIP)
	for name, v := range req.Headers {
		set("request.headers["+strings.ToLower(name)+"]", v)
	}
	if req.FromPrincipal != "" {
		// As Envoy logs it, or as policies name it: one identity.
		return dataplane.WithPeer(attrs, dataplane.PeerOf(strings.TrimPrefix(req.FromPrincipal, "spiffe://")))
	}
	return attrs
}

// normalizedPath is a request's path as the proxies match it: its dot segments resolved
// (RFC 3986, Istio's default path normalization, BASE), slashes and query kept.
func normalizedPath(p string) string {
	path, query, hasQuery := strings.Cut(p, "?")
	segments := strings.Split(path, "/")
	out := make([]string, 0, len(segments))
	for i, seg := range segments {
		last := i == len(segments)-1
		switch seg {
		case ".":
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
			continue
		}
		if last {
			out = append(out, "") // a/b/.. is a/, as a directory
		}
	}
	path = strings.Join(out, "/")
	if hasQuery {
		path += "?" + query
	}
	return path
}
