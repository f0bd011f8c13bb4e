package policy

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

func authorizationPolicyRules() []Rule {
	ap := []string{KindAuthorizationPolicy}
	return []Rule{{
		ID: "MG201", Name: "ap-deny-positive-jwt", Default: Deny, Kinds: ap,
		Summary: "A DENY policy matching positive `requestPrincipals` or `request.auth.*` values.",
		Why:     "A request without a token has no principal and no claims, so the DENY never matches it: the attacker simply sends no token.",
		Check: eachAPRule(denyOnly, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			return perMatch(jwtMatcher.positive(r, at), func(m match) Finding {
				return finding(m.field(),
					fmt.Sprintf("DENY matches token attributes %s, so a caller that sends no token is not denied", mesh.QuoteList(m.values)),
					"deny on the negative form (notRequestPrincipals / notValues listing what is allowed), or turn the policy into an ALLOW with these values")
			})
		}),
	}, {
		ID: "MG202", Name: "ap-allow-negative-jwt", Default: Deny, Kinds: ap,
		Summary: "An ALLOW policy using `notRequestPrincipals`, or `notValues` on `request.auth.*`, in a rule a request without a token can match (nothing ANDed with it demands a token).",
		Why:     "A request without a token satisfies every negative match: token-less callers are allowed.",
		Check: eachAPRule(allowOnly, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			// Fields of one source, and every condition, are ANDed: requestPrincipals
			// ["*"] beside notRequestPrincipals [partner] admits no token-less caller.
			return perMatch(admittingOnly(p.Namespace, r, jwtMatcher.negative(r, at), dataplane.MatchesTokenless), func(m match) Finding {
				return finding(m.field(),
					fmt.Sprintf("ALLOW on everything but %s also allows a caller that sends no token", mesh.QuoteList(m.values)),
					"allow on positive values (requestPrincipals / values), or deny on this negative match instead")
			})
		}),
	}, {
		ID: "MG203", Name: "ap-allow-all", Default: Warn, Kinds: ap,
		Summary: "An ALLOW policy with an empty rule `{}`.",
		Why:     "An empty rule matches every request: everything in scope is allowed and every other ALLOW policy there is moot.",
		Check: eachAPRule(allowOnly, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			if len(r.From)+len(r.To)+len(r.When) > 0 {
				return nil
			}
			return []Finding{finding(at,
				"an empty ALLOW rule matches every request, with or without a token: every other ALLOW policy in scope is moot",
				"give the rule a from, to or when, e.g. from: [{source: {requestPrincipals: [\"<issuer>/*\"]}}]")}
		}),
	}, {
		ID: "MG204", Name: "ap-request-principal-pattern", Default: Deny, Kinds: ap,
		Summary: "`requestPrincipals` that cannot match since Istio 1.21 (split at the last `/`), e.g. `https://sts.windows.net/<tid>/*`, or a wildcard in the middle.",
		Why:     "The pattern matches no token: an ALLOW locks everyone out, a DENY never fires.",
		Check: eachAPRule(anyAction, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			var out []Finding
			for _, m := range append(principalMatcher.positive(r, at), principalMatcher.negative(r, at)...) {
				for _, v := range m.values {
					if why := principalProblem(v); why != "" {
						out = append(out, finding(m.field(),
							fmt.Sprintf("%q never matches a token (%s): an ALLOW locks callers out, a DENY never fires", v, why),
							"write <iss>/<sub> with the token's exact iss, e.g. \"https://sts.windows.net/<tid>//*\" for v1 Entra tokens"))
					}
				}
			}
			return out
		}),
	}, {
		ID: "MG205", Name: "ap-unknown-when-key", Default: Deny, Kinds: ap,
		Summary: "A `when` key Istio does not know, or a claim key with bad syntax. Warn for a claim named with a dot (`request.auth.claims[realm_access.roles]`), which Istio reads as one top-level claim, not a nested one.",
		Why:     "Istio skips the whole rule, DENY rules included: what it was meant to deny gets through. A dotted claim name matches no nested claim (Keycloak's roles): an ALLOW on it admits no one, a DENY on it denies no one.",
		Check: eachAPRule(anyAction, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			var out []Finding
			for k, w := range r.When {
				claim, isClaim := strings.CutPrefix(w.Key, "request.auth.claims[")
				switch {
				case !rulefields.KnownWhenKey(w.Key):
					out = append(out, finding(at.Child("when").Index(k).Child("key"),
						fmt.Sprintf("Istio does not know the key %q and skips this whole rule: a DENY rule stops denying", w.Key),
						"use a key from Istio's condition reference, e.g. request.auth.claims[groups], source.namespace, request.headers[x-name]"))
				// A namespaced claim (Auth0's https://example.com/roles) is one claim with dots.
				case isClaim && !strings.Contains(claim, "][") && strings.Contains(claim, ".") && !strings.ContainsAny(claim, "/:"):
					nested := "[" + strings.ReplaceAll(strings.TrimSuffix(claim, "]"), ".", "][") + "]"
					out = append(out, finding(at.Child("when").Index(k).Child("key"),
						fmt.Sprintf("%q names one top-level claim %q, not a nested one: a token's nested claim never matches it", w.Key, strings.TrimSuffix(claim, "]")),
						fmt.Sprintf("name a nested claim level by level: request.auth.claims%s", nested)).as(Warn))
				}
			}
			return out
		}),
	}, {
		ID: "MG206", Name: "ap-dry-run", Default: Warn, Kinds: ap,
		Summary: "The annotation `istio.io/dry-run` set to a true value as Go's `strconv.ParseBool` reads it (`\"true\"`, `\"True\"`, `\"1\"`, `\"t\"`), as Istio reads it.",
		Why:     "The policy is only logged, never enforced.",
		Check: judge(func(c *Context, p *AuthorizationPolicy) []Finding {
			if !dataplane.IsDryRun(p) {
				return nil
			}
			return []Finding{finding(field.NewPath("metadata", "annotations").Key(dataplane.DryRunAnnotation),
				"the policy is in dry-run: Istio logs its verdicts and enforces none of them",
				"remove the istio.io/dry-run annotation once the logged verdicts look right")}
		}),
	}, {
		ID: "MG207", Name: "ap-deny-positive-http", Default: Warn, Kinds: ap,
		Summary: "A DENY or CUSTOM (ext-authz) policy on positive `paths`, `hosts` or `methods`, but a catch-all (`*`, or `/*` for paths), which matches every request.",
		Why:     "Path normalisation, case and `host:port` variants slip past a positive DENY, and past the external check a CUSTOM policy sends only the matching requests to.",
		Check: eachAPRule(denyOrCustom, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			var out []Finding
			for j, to := range r.To {
				o := to.Operation
				if o == nil {
					continue
				}
				for _, f := range rulefields.Operation {
					vals := f.Values(o)
					// A catch-all value matches every request: no variant slips past it.
					if !rulefields.Of(f.Attr).HTTPOnly || len(vals) == 0 || slices.ContainsFunc(vals, func(v string) bool { return v == "*" || f.Attr == rulefields.Path && v == "/*" }) {
						continue
					}
					out = append(out, finding(at.Child("to").Index(j).Child("operation", f.Name),
						fmt.Sprintf("%s on %s %s is bypassed by variants (case, encoding, host:port) of the same request", p.Spec.Action, f.Name, mesh.QuoteList(vals)),
						"allow what is permitted (ALLOW with paths/hosts/methods) instead of denying what is not, and normalise paths in meshConfig"))
				}
			}
			return out
		}),
	}, {
		ID: "MG208", Name: "ap-header-presence-auth", Default: Warn, Kinds: ap,
		Summary: "An ALLOW rule that admits on the mere presence of a credential or identity header (`request.headers[authorization]` with `values: [\"*\"]`), or on its absence or difference (`notValues`), with nothing in the rule demanding a verified token.",
		Why:     "Any string in the header passes, and so does a request without it: nothing verifies a header. A RequestAuthentication verifies tokens; requestPrincipals demand one.",
		Check: eachAPRule(allowOnly, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			var out []Finding
			for k, w := range r.When {
				header, ok := strings.CutPrefix(strings.ToLower(w.Key), "request.headers[")
				header = strings.TrimSuffix(header, "]")
				if !ok || !identityHeaders[header] {
					continue
				}
				fix := "verify the token with a RequestAuthentication and match it with requestPrincipals or request.auth.claims, not the raw header"
				if slices.Contains(w.Values, "*") {
					out = append(out, finding(at.Child("when").Index(k).Child("values"),
						fmt.Sprintf("ALLOW on any value of the %s header: any string in it passes, nothing verifies it", header), fix))
				}
				if len(w.NotValues) > 0 {
					out = append(out, finding(at.Child("when").Index(k).Child("notValues"),
						fmt.Sprintf("ALLOW on the %s header not being %s: a request without it, or with any other string, passes", header, mesh.QuoteList(w.NotValues)), fix))
				}
			}
			if len(out) == 0 {
				return nil
			}
			if cr, ok := dataplane.CompileRule(p.Namespace, r); !ok || !dataplane.MatchesTokenless(cr) {
				return nil // the rule demands a verified token besides
			}
			return out
		}),
	}, {
		ID: "MG209", Name: "ap-too-large", Default: Deny, Kinds: ap,
		Summary: fmt.Sprintf("An AuthorizationPolicy of more than %d rules, with a field of more than %d values, or of more than %d values in all.", maxPolicyRules, maxFieldValues, maxPolicyValues),
		Why:     "Every write of the namespace is judged against all its policies, and so is every request by Envoy: a policy this large slows both, and lets one tenant slow the webhook for all. Prefixes, suffixes and CIDR ranges say the same in few values.",
		Check: judge(func(c *Context, p *AuthorizationPolicy) []Finding {
			var out []Finding
			rules := field.NewPath("spec", "rules")
			if len(p.Spec.Rules) > maxPolicyRules {
				out = append(out, finding(rules, fmt.Sprintf("%d rules, over meshguard's limit of %d", len(p.Spec.Rules), maxPolicyRules), "split the policy in several"))
			}
			total := 0
			for i, r := range p.Spec.Rules {
				at := rules.Index(i)
				for _, cond := range dataplane.WrittenConditions(r) {
					total += len(cond.Values) + len(cond.NotValues)
					for _, list := range []struct {
						values   []string
						negative bool
						when     string
					}{{cond.Values, false, "values"}, {cond.NotValues, true, "notValues"}} {
						if len(list.values) <= maxFieldValues {
							continue
						}
						path := cond.At.Path(at, list.negative)
						if cond.At.List == 'w' {
							path = path.Child(list.when)
						}
						out = append(out, finding(path, fmt.Sprintf("%d values, over meshguard's limit of %d for one field", len(list.values), maxFieldValues),
							"match by prefix or suffix (abc*, *abc) or CIDR range, or split the rule"))
					}
				}
			}
			if total > maxPolicyValues {
				out = append(out, finding(field.NewPath("spec", "rules"), fmt.Sprintf("%d values in all, over meshguard's limit of %d for one policy", total, maxPolicyValues), "split the policy in several"))
			}
			return out
		}),
	}}
}

// The bounds of one AuthorizationPolicy (MG209): far above what real policies name, far
// below what would slow a review.
const (
	maxPolicyRules  = 256
	maxFieldValues  = 1024
	maxPolicyValues = 4096
)

// identityHeaders carry credentials or identities that something upstream is trusted to
// have checked: bearer tokens, and the user headers of authenticating proxies
// (oauth2-proxy, Kubeflow, Google IAP).
var identityHeaders = map[string]bool{
	"authorization": true, "x-jwt-assertion": true, "cookie": true,
	"x-forwarded-user": true, "x-forwarded-email": true, "x-auth-request-user": true, "x-auth-request-email": true,
	"kubeflow-userid": true, "x-goog-authenticated-user-email": true, "x-user": true, "x-user-id": true, "x-userid": true,
}

// principalMatcher picks request principals: the source field and request.auth.principal.
var principalMatcher = matcher{source: jwtMatcher.source, when: func(k string) bool { return k == rulefields.RequestPrincipal }}

// admittingOnly keeps the matches of a rule through which some request that admits lets
// in: for a match in a source, the rule with that source alone; for a condition, the rule
// whole. A rule Istio skips (an unknown when key) admits nothing.
func admittingOnly(namespace string, r *apRule, ms []match, admits func(compiledRule) bool) []match {
	cr, ok := dataplane.CompileRule(namespace, r)
	if !ok {
		return nil
	}
	return slices.DeleteFunc(ms, func(m match) bool {
		rule := cr
		if m.fromList {
			rule.From = cr.From[m.index : m.index+1]
		}
		return !admits(rule)
	})
}
