package policy

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	securityv1beta1 "istio.io/api/security/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

func crossResourceRules() []Rule {
	ra := []string{KindRequestAuthentication}
	ap := []string{KindAuthorizationPolicy}
	return []Rule{{
		ID: "MG301", Name: "ra-without-enforcement", Default: Warn, Kinds: ra,
		Summary: "Workloads selected by a RequestAuthentication that admit a request with no token on a path no policy names, from a caller no policy names (without mTLS, or any workload of the mesh), as Envoy evaluates their AuthorizationPolicies: a rule of any ALLOW policy admits, a DENY covers what it matches. Token-less access on named paths or from named callers is an exemption on purpose. Where the policies name ports and the workload's Services send to port numbers, the finding names the ports left open, and there is none when they are all covered. Ambient Pods under a selector RequestAuthentication are MG801's.",
		Why:     "A RequestAuthentication only rejects bad tokens: requests with no token pass, with no identity.",
		Check: judge(func(c *Context, ra *RequestAuthentication) []Finding {
			// Ambient Pods are MG801's: no proxy loads a selector RequestAuthentication there,
			// and the fix is a waypoint's, not another selector policy.
			var open []*Workload
			var first servedPorts                     // open[0]'s
			byLabels := map[*protection]servedPorts{} // workloads of one label set share a protection
			for w, f := range c.eachWorkload(ra) {
				if f.Protection.Enforces() || len(mesh.ScopeOf(ra).TargetRefs) == 0 && f.Ambient {
					continue
				}
				s, seen := byLabels[f.Protection]
				if !seen {
					s = openServedPorts(c.State, w, *f.Protection)
					byLabels[f.Protection] = s
				}
				if s.known && len(s.open) == 0 {
					continue // the ports its policies leave open are none its Services send to
				}
				if len(open) == 0 {
					first = s
				}
				open = append(open, w)
			}
			if len(open) == 0 {
				return nil
			}
			path := field.NewPath("spec", "selector")
			if len(mesh.ScopeOf(ra).TargetRefs) > 0 {
				path = field.NewPath("spec", "targetRefs")
			}
			who, witness := c.describe(open), c.protection(c.State, open[0]).Tokenless()
			if len(first.open) > 0 {
				word := "port"
				if len(first.open) > 1 {
					word = "ports"
				}
				who += fmt.Sprintf(" on %s %s of its Services", word, strings.Join(first.open, ", "))
				witness = first.witness
			}
			gets := dataplane.DescribeRequest(witness) + " gets in on a path no policy names"
			if open[0].Virtual {
				// No such workload runs yet (MG403 says so where others do): the finding is
				// about the ones to come.
				gets = "once they run, " + gets
			}
			return []Finding{finding(path,
				fmt.Sprintf("no AuthorizationPolicy requires a token for %s: %s", who, gets),
				fmt.Sprintf("add an ALLOW policy for the same workloads with requestPrincipals: [%q], or a DENY with notRequestPrincipals: [\"*\"]", firstIssuer(ra)+"/*"))}
		}),
	}, {
		ID: "MG302", Name: "ap-jwt-without-ra", Default: Warn, Kinds: ap,
		Summary: "An AuthorizationPolicy using `requestPrincipals` or `request.auth.*` on workloads no RequestAuthentication covers. Warn for ALLOW, deny for a DENY that would never fire.",
		Why:     "Without a RequestAuthentication no token is validated: an ALLOW on token attributes denies everyone, a DENY on them never fires.",
		Check: judge(func(c *Context, p *AuthorizationPolicy) []Finding {
			if !usesToken(p) {
				return nil
			}
			bare := c.workloadsWhere(p, func(f workloadFacts) bool { return !f.Protection.Verifies() })
			if len(bare) == 0 {
				return nil
			}
			fix := "add a RequestAuthentication for the same workloads with the issuer, jwksUri and audiences of the tokens"
			if len(c.ambientOf(bare)) > 0 {
				fix = "ambient workloads have their tokens checked at a waypoint only: attach a RequestAuthentication, and this policy, to their Service by targetRefs, and bind the Service to a waypoint (" + mesh.UseWaypointLabel + ")"
			}
			if dataplane.IsDeny(p) && deniesOnClaims(p) {
				return []Finding{finding(field.NewPath("spec", "rules"),
					fmt.Sprintf("no RequestAuthentication validates tokens for %s, so this DENY on token attributes never fires", c.describe(bare)), fix).as(Deny)}
			}
			effect := "so every request there is denied (403)"
			switch w := bare[0]; {
			case c.inAmbient(w) && len(mesh.ScopeOf(p).TargetRefs) == 0:
				// ztunnel enforces the policy for them, L4 only: its rules on token
				// attributes are dropped there (MG803), not left unmatched.
				effect = "and ztunnel, which enforces this policy for them, drops its rules on token attributes: every connection there is refused"
				if ztunnelAdmits(c.State, c.Settings.Root, w) {
					effect = "and ztunnel, which enforces this policy for them, drops its rules on token attributes: only what other rules admit gets in"
				}
			case c.protection(c.State, w).AdmitsUnverified():
				effect = "so the rules of this policy on token attributes never match: only what other rules admit gets in"
			}
			return []Finding{finding(field.NewPath("spec", "rules"),
				fmt.Sprintf("no RequestAuthentication validates tokens for %s, %s", c.describe(bare), effect), fix)}
		}),
	}, {
		ID: "MG303", Name: "removes-jwt-enforcement", Default: Deny, Kinds: append(ra, ap...), OnDelete: true,
		Summary: "A change (CREATE, UPDATE or DELETE) of a RequestAuthentication or AuthorizationPolicy that leaves workloads, protected now, accepting token-less or unverified requests: a policy deleted or weakened, a rule or a second ALLOW policy that admits token-less requests on every path, a DENY narrowed, a dry run switched on. Where a guardrail requires coverage, also a workload whose policies turn token-less requests away with no RequestAuthentication left (its RequestAuthentication deleted first).",
		Why:     "A regression against the live state: what required a token now lets requests through without one.",
		Check: func(c *Context) []Finding {
			if c.Before == nil {
				return nil
			}
			if _, isAP := c.Object.(*AuthorizationPolicy); c.OldObject == nil && !isAP {
				return nil // a new RequestAuthentication opens nothing
			}
			// Where coverage is required, a workload that turns token-less requests away
			// must not let them in, even once no token can be validated: removing the
			// RequestAuthentication, then the policy, would open it in two steps.
			covered := c.Settings.Coverage != nil
			var opened, undenied []*Workload
			for _, w := range c.changedWorkloads() {
				before, after := c.protection(c.Before, w), c.protection(c.State, w)
				switch {
				case before.RequiresToken() && after.Verifies() && !after.Enforces(),
					covered && !before.Verifies() && before.Enforces() && !after.Enforces():
					opened = append(opened, w)
				case before.Verifies() && deniesOnClaimsAt(before) && !after.Verifies() && deniesOnClaimsAt(after):
					undenied = append(undenied, w)
				}
			}
			verb := strings.ToLower(string(c.Operation))
			var out []Finding
			if len(opened) > 0 {
				out = append(out, finding(field.NewPath("spec"),
					fmt.Sprintf("this %s leaves %s accepting requests with no token (%s, on a path no policy names); today they require one", verb, c.describe(opened), dataplane.DescribeRequest(c.protection(c.State, opened[0]).Tokenless())),
					"first apply another AuthorizationPolicy that requires a token for these workloads, or keep this one"))
			}
			if len(undenied) > 0 {
				out = append(out, finding(field.NewPath("spec"),
					fmt.Sprintf("this %s stops token validation for %s, so their DENY policies on token attributes stop firing", verb, c.describe(undenied)),
					"keep a RequestAuthentication for these workloads, or remove the DENY policies that depend on it first"))
			}
			return out
		},
	}, {
		ID: "MG304", Name: "ra-issuer-merge", Default: Deny, Kinds: ra,
		Summary: "The same issuer in two RequestAuthentications that apply to one workload, configured differently.",
		Why:     "Istio merges them and Envoy accepts a token that passes either: the weakest configuration wins, an audience pin is void.",
		Check: judge(func(c *Context, ra *RequestAuthentication) []Finding {
			var out []Finding
			// Each jwtRule is reported once per other RequestAuthentication.
			type pair struct {
				rule  int
				other *RequestAuthentication
			}
			reported := map[pair]bool{}
			var last *protection
			for w, f := range c.eachWorkload(ra) {
				if f.Protection == last {
					continue // as the workload before: the same findings
				}
				last = f.Protection
				for _, other := range f.Protection.RAs {
					if mesh.SameObject(other, ra) {
						continue
					}
					for i, r := range ra.Spec.JwtRules {
						for _, o := range other.Spec.JwtRules {
							key := pair{i, other}
							if r.Issuer == "" || o.Issuer != r.Issuer || reported[key] || proto.Equal(r, o) {
								continue
							}
							reported[key] = true
							out = append(out, finding(field.NewPath("spec", "jwtRules").Index(i).Child("issuer"),
								fmt.Sprintf("%s also configures issuer %q for %s, differently: a token that passes the weaker of the two is accepted", ref(other), r.Issuer, c.describe([]*Workload{w})),
								"configure each issuer once per workload, in one RequestAuthentication, with its audiences"))
						}
					}
				}
			}
			return out
		}),
	}, {
		ID: "MG305", Name: "ap-unknown-issuer", Default: Warn, Kinds: ap,
		Summary: "A `requestPrincipals` issuer that no RequestAuthentication on those workloads configures. Warn for ALLOW, deny for DENY.",
		Why:     "No token from that issuer is ever validated: an ALLOW on it locks callers out, a DENY on it never fires.",
		Check: eachAPRule(allowOrDeny, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			effect, action := "no token of it is validated: callers are locked out", Warn
			if dataplane.IsDeny(p) {
				effect, action = "this DENY never fires", Deny
			}
			// Workloads under the same RequestAuthentications share one issuer list: each
			// principal is asked of the lists, not of every workload.
			type issuersOf struct {
				issuers   []string
				workloads []*Workload
			}
			var lists []*issuersOf
			var verified []*Workload // the workloads of every list
			for w, f := range c.eachWorkload(p) {
				is := f.Protection.Issuers()
				if len(is) == 0 {
					continue
				}
				verified = append(verified, w)
				i := slices.IndexFunc(lists, func(l *issuersOf) bool { return slices.Equal(l.issuers, is) })
				if i < 0 {
					i, lists = len(lists), append(lists, &issuersOf{issuers: is})
				}
				lists[i].workloads = append(lists[i].workloads, w)
			}
			var out []Finding
			for _, m := range requestPrincipals(r, at) {
				for _, v := range m.values {
					iss, _, ok := splitPrincipal(v)
					if c.stopped() {
						return out
					}
					if !ok || iss == "*" || principalProblem(v) != "" {
						continue
					}
					var unknown []*Workload
					lacks := func(l *issuersOf) bool {
						return !slices.ContainsFunc(l.issuers, func(i string) bool { return issuerMatches(iss, i) })
					}
					if !slices.ContainsFunc(lists, func(l *issuersOf) bool { return !lacks(l) }) {
						unknown = verified
					} else {
						for _, l := range lists {
							if lacks(l) {
								unknown = append(unknown, l.workloads...)
							}
						}
					}
					if len(unknown) > 0 {
						out = append(out, finding(m.field(),
							fmt.Sprintf("no RequestAuthentication for %s configures issuer %q, so %s", c.describe(unknown), iss, effect),
							"add the issuer to the workloads' RequestAuthentication, or correct the principal to an issuer it configures").as(action))
					}
				}
			}
			return out
		}),
	}, {
		ID: "MG306", Name: "ap-any-issuer", Default: Warn, Kinds: ap,
		Summary: "`requestPrincipals: [\"*\"]` where the workloads' RequestAuthentications configure more than one issuer.",
		Why:     "A valid token from any of the issuers is accepted, and any team that adds an issuer widens access.",
		Check: eachAPRule(allowOnly, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			for _, m := range requestPrincipals(r, at) {
				if !slices.Contains(m.values, "*") {
					continue
				}
				for w, f := range c.eachWorkload(p) {
					if is := f.Protection.Issuers(); len(is) > 1 {
						return []Finding{finding(m.field(),
							fmt.Sprintf("\"*\" accepts a valid token from any of %d issuers configured for %s: %s", len(is), c.describe([]*Workload{w}), mesh.QuoteList(is)),
							"name the issuer: requestPrincipals: [\"<issuer>/*\"]")}
					}
				}
			}
			return nil
		}),
	}, {
		ID: "MG307", Name: "mtls-fields-permissive", Default: Deny, Kinds: []string{KindAuthorizationPolicy, KindPeerAuthentication}, OnDelete: true,
		Summary: "An AuthorizationPolicy matching `principals`, `namespaces` or `serviceAccounts` where the PeerAuthentication in force is PERMISSIVE or DISABLE (no PeerAuthentication means PERMISSIVE). Deny for a positive DENY or a negative ALLOW, warn for a positive ALLOW. Not for policies attached to waypoints, which receive only mTLS. Also a PeerAuthentication change (a DELETE too) after which mTLS is no longer STRICT for workloads where a DENY or negative ALLOW matches callers that way.",
		Why:     "A plaintext caller carries no identity: it escapes a positive DENY and satisfies a negative ALLOW; a positive ALLOW locks it out.",
		Check: func(c *Context) []Finding {
			if p, ok := c.Object.(*PeerAuthentication); ok {
				return identityPoliciesOpened(c, p)
			}
			if c.Operation == Delete {
				return nil
			}
			return identityMatchesPlaintext(c)
		},
	}, {
		ID: "MG308", Name: "http-fields-on-tcp", Default: Warn, Kinds: ap,
		Summary: "HTTP-only fields on workloads whose Service ports are not HTTP (by port name prefix or `appProtocol`). Not on gateways, whose protocols are their listeners'.",
		Why:     "On a TCP port Istio drops an ALLOW rule with HTTP fields (traffic denied) and widens such a DENY rule to match everything.",
		Check: eachAPRule(allowOrDeny, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			if !rulefields.UsesHTTP(r) {
				return nil
			}
			var tcp []string
			for _, w := range c.workloadsOf(p) {
				if mesh.IsProxy(w) {
					continue // a gateway's protocols are its listeners', not its Service's port names
				}
				for _, port := range nonHTTPPorts(c.State, w) {
					if ruleOnPort(r, port.target) {
						tcp = append(tcp, port.name)
					}
				}
			}
			if len(tcp) == 0 {
				return nil
			}
			effect := "Istio drops this ALLOW rule there, so that traffic is denied"
			if dataplane.IsDeny(p) {
				effect = "this DENY rule matches all traffic there, so every connection is denied"
			}
			return []Finding{finding(at,
				fmt.Sprintf("the rule uses HTTP-only fields but %s not HTTP: %s", strings.Join(slices.Compact(slices.Sorted(slices.Values(tcp))), ", "), effect),
				"scope the rule with to: [{operation: {ports: [<http ports>]}}], or name the Service ports http-*/grpc-*")}
		}),
	}, {
		ID: "MG309", Name: "claims-space-delimited", Default: Warn, Kinds: ap,
		Summary: "`request.auth.claims[scp]` (or another space-separated claim) without `spaceDelimitedClaims` on the RequestAuthentication.",
		Why:     "Since Istio 1.21 only `scope` and `permission` are split on spaces: a value matching one scope never matches.",
		Check: eachAPRule(anyAction, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			var out []Finding
			for k, w := range r.When {
				claim, ok := strings.CutPrefix(w.Key, "request.auth.claims[")
				claim, _, _ = strings.Cut(claim, "]")
				if !ok || !spaceDelimited[claim] {
					continue
				}
				unsplit := c.workloadsWhere(p, func(f workloadFacts) bool {
					ras := f.Protection.RAs
					return len(ras) > 0 && !slices.ContainsFunc(ras, func(ra *RequestAuthentication) bool {
						return slices.ContainsFunc(ra.Spec.JwtRules, func(j *jwtRule) bool { return slices.Contains(j.SpaceDelimitedClaims, claim) })
					})
				})
				if len(unsplit) > 0 {
					out = append(out, finding(at.Child("when").Index(k).Child("key"),
						fmt.Sprintf("%s is one space-separated string and is not split for %s: a value naming one entry never matches", claim, c.describe(unsplit)),
						fmt.Sprintf("add spaceDelimitedClaims: [%q] to the jwtRule (Istio 1.28+)", claim)))
				}
			}
			return out
		}),
	}, {
		ID: "MG310", Name: "presenter-entra-v1", Default: Warn, Kinds: ap,
		Summary: "`request.auth.presenter` with an Entra v1 issuer.",
		Why:     "The presenter is the `azp` claim; v1 tokens carry `appid` instead, so the condition never matches.",
		Check: eachAPRule(anyAction, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			var out []Finding
			for k, w := range r.When {
				if w.Key != "request.auth.presenter" {
					continue
				}
				v1 := c.workloadsWhere(p, func(f workloadFacts) bool {
					return slices.ContainsFunc(f.Protection.Issuers(), func(i string) bool {
						e, ok := parseEntra(i)
						return ok && e.isV1Issuer()
					})
				})
				if len(v1) > 0 {
					out = append(out, finding(at.Child("when").Index(k).Child("key"),
						fmt.Sprintf("%s accept Entra v1 tokens, which carry appid, not azp: request.auth.presenter never matches them", c.describe(v1)),
						"match request.auth.claims[appid] for v1 tokens"))
				}
			}
			return out
		}),
	}}
}

// spaceDelimited are claims issuers fill with one space-separated string.
var spaceDelimited = map[string]bool{"scp": true}

// mtlsMatcher picks the attributes only mTLS fills: peer principals, namespaces, service
// accounts and trust domains.
var mtlsMatcher = matcher{
	source: func(s *securityv1beta1.Source) ([]string, []string, string) {
		pos := slices.Concat(s.Principals, s.Namespaces, s.ServiceAccounts, s.TrustDomains)
		neg := slices.Concat(s.NotPrincipals, s.NotNamespaces, s.NotServiceAccounts, s.NotTrustDomains)
		return pos, neg, mtlsFieldName(s)
	},
	when: func(k string) bool {
		return k == "source.principal" || k == "source.namespace" || k == "source.serviceAccount" || k == "source.trustDomain"
	},
}

// mtlsFieldName names the mTLS field a source uses, for the finding's path.
func mtlsFieldName(s *securityv1beta1.Source) string {
	switch {
	case len(s.Principals)+len(s.NotPrincipals) > 0:
		return "principals"
	case len(s.Namespaces)+len(s.NotNamespaces) > 0:
		return "namespaces"
	case len(s.ServiceAccounts)+len(s.NotServiceAccounts) > 0:
		return "serviceAccounts"
	}
	return "trustDomains"
}

// issuerMatches tells whether a principal's issuer part (exact, or *suffix) names issuer.
func issuerMatches(pattern, issuer string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(issuer, suffix)
	}
	return pattern == issuer
}

func firstIssuer(ra *RequestAuthentication) string {
	for _, r := range ra.Spec.JwtRules {
		if r.Issuer != "" {
			return r.Issuer
		}
	}
	return "<issuer>"
}

// ruleOnPort tells whether a rule applies on a workload port: some entry of its to names
// no ports, names the port, or leaves it out of its notPorts.
func ruleOnPort(r *apRule, port string) bool {
	if len(r.To) == 0 {
		return true
	}
	return slices.ContainsFunc(r.To, func(t *securityv1beta1.Rule_To) bool {
		o := t.GetOperation()
		return (len(o.GetPorts()) == 0 || slices.Contains(o.GetPorts(), port)) && !slices.Contains(o.GetNotPorts(), port)
	})
}

// servicePort is a port of a Service: as messages name it, and the workload port it sends
// to, which AuthorizationPolicy ports name.
type servicePort struct{ name, target string }

// nonHTTPPorts returns the ports of the Services selecting w that Istio treats as opaque TCP.
func nonHTTPPorts(st State, w *Workload) []servicePort {
	var out []servicePort
	for s := range mesh.ServicesSelecting(st, w) {
		for _, p := range s.Spec.Ports {
			if proto := portProtocol(p); tcpProtocols[proto] {
				target, _ := workloadPort(p)
				out = append(out, servicePort{fmt.Sprintf("Service %s/%s port %d (%s)", s.Namespace, s.Name, p.Port, proto), target})
			}
		}
	}
	return out
}

// servedPorts are the ports of a workload's Services on which its policies admit token-less
// requests, and whether that is known; witness is such a request on the first of them,
// its port left out (the finding names the ports).
type servedPorts struct {
	open    []string
	witness request
	known   bool
}

// openServedPorts finds a workload's servedPorts. They are known where the policies name
// ports, the workload's sidecar enforces them, and its Services send to port numbers. A
// port no Service sends to may still be served; the finding names the ports users reach.
func openServedPorts(st State, w *Workload, p protection) servedPorts {
	if _, readsPort := p.Tokenless()[rulefields.Port]; !readsPort || p.ViaWaypoint() {
		return servedPorts{}
	}
	var served []string
	for s := range mesh.ServicesSelecting(st, w) {
		for _, sp := range s.Spec.Ports {
			port, numbered := workloadPort(sp)
			if !numbered {
				return servedPorts{} // a container port's name: only the Pod's spec tells its number
			}
			if !slices.Contains(served, port) {
				served = append(served, port)
			}
		}
	}
	if len(served) == 0 {
		return servedPorts{}
	}
	open, witness := p.TokenlessOn(served)
	witness = maps.Clone(witness)
	delete(witness, rulefields.Port)
	return servedPorts{open: open, witness: witness, known: true}
}

// workloadPort is the port of the workload a Service port sends to, and whether a number
// says it: a target port named is a container port's name, which only the Pod's spec
// resolves (the Service's own port is given for it then).
func workloadPort(p corev1.ServicePort) (string, bool) {
	if n := p.TargetPort.IntValue(); n != 0 {
		return strconv.Itoa(n), true
	}
	return strconv.Itoa(int(p.Port)), p.TargetPort.StrVal == ""
}

// portProtocol is the protocol Istio selects for a Service port: appProtocol, else the port
// name's prefix.
func portProtocol(p corev1.ServicePort) string {
	if p.AppProtocol != nil {
		return strings.ToLower(*p.AppProtocol)
	}
	name, _, _ := strings.Cut(p.Name, "-")
	return strings.ToLower(name)
}

// tcpProtocols are protocols Istio proxies as opaque TCP, where HTTP attributes are absent.
var tcpProtocols = map[string]bool{"tcp": true, "tls": true, "https": true, "mongo": true, "mysql": true, "redis": true}

// identityMatchesPlaintext is MG307 for an AuthorizationPolicy: its rules that match callers
// by identity, on workloads plaintext callers reach.
func identityMatchesPlaintext(c *Context) []Finding {
	return eachAPRule(allowOrDeny, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
		// A positive DENY and a negative ALLOW let plaintext callers in; a positive
		// ALLOW locks them out.
		opens, closes := mtlsMatcher.positive(r, at), []match(nil)
		if dataplane.IsAllow(p) {
			// A negative match lets a plaintext caller in only if nothing ANDed with
			// it demands an identity (principals beside notPrincipals does).
			opens, closes = admittingOnly(p.Namespace, r, mtlsMatcher.negative(r, at), dataplane.MatchesPlaintext), mtlsMatcher.positive(r, at)
		}
		// A waypoint receives only mTLS, from ztunnel: its callers always carry an identity.
		if len(opens)+len(closes) == 0 || mesh.ScopeOf(p).WaypointOnly(c.State) {
			return nil
		}
		plain := mesh.WorkloadsWhere(c.workloadsOf(p), func(w *Workload) bool {
			return mesh.MTLSMode(c.State, c.Settings.Root, w) != securityv1beta1.PeerAuthentication_MutualTLS_STRICT
		})
		if len(plain) == 0 {
			return nil
		}
		fix := "apply a STRICT PeerAuthentication to these workloads (their namespace, or the mesh)"
		return append(perMatch(opens, func(m match) Finding {
			return finding(m.field(),
				fmt.Sprintf("mTLS is not STRICT for %s: a plaintext caller has no identity and so is not matched by %s; it gets through", c.describe(plain), mesh.QuoteList(m.values)), fix)
		}), perMatch(closes, func(m match) Finding {
			effect := "are denied (403)"
			if len(c.ambientOf(plain)) > 0 {
				effect = "are refused: ztunnel resets their connections"
			}
			return finding(m.field(),
				fmt.Sprintf("mTLS is not STRICT for %s: plaintext callers have no identity and %s", c.describe(plain), effect), fix).as(Warn)
		})...)
	})(c)
}

// identityPoliciesOpened is MG307 for a PeerAuthentication change: the AuthorizationPolicies
// that plaintext callers get past once mTLS is no longer STRICT for their workloads.
func identityPoliciesOpened(c *Context, p *PeerAuthentication) []Finding {
	weakened := c.lostStrictMTLS()
	var opened []string
	for _, w := range weakened {
		for _, ap := range mesh.ForWorkload(w, c.Settings.Root, c.State.AuthorizationPolicies) {
			if dataplane.IsDryRun(ap) || !dataplane.IsAllow(ap) && !dataplane.IsDeny(ap) || mesh.ScopeOf(ap).WaypointOnly(c.State) || slices.Contains(opened, ref(ap)) {
				continue
			}
			if slices.ContainsFunc(ap.Spec.Rules, func(r *apRule) bool {
				if dataplane.IsDeny(ap) {
					return len(mtlsMatcher.positive(r, nil)) > 0
				}
				return len(admittingOnly(ap.Namespace, r, mtlsMatcher.negative(r, nil), dataplane.MatchesPlaintext)) > 0
			}) {
				opened = append(opened, ref(ap))
			}
		}
	}
	if len(opened) == 0 {
		return nil
	}
	slices.Sort(opened)
	return []Finding{finding(mtlsField(c, p),
		fmt.Sprintf("this %s leaves mTLS no longer STRICT for %s, where %s match callers by identity: a plaintext caller has none, and gets past them", strings.ToLower(string(c.Operation)), c.describe(weakened), strings.Join(opened, ", ")),
		"keep mTLS STRICT for these workloads, or match these callers another way (ipBlocks)")}
}
