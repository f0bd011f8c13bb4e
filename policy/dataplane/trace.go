package dataplane

import (
	"fmt"
	"slices"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// A proxy's trace of one request: what its token check and each of its
// AuthorizationPolicies did, rule by rule, with the same evaluation as Enforcement's.

// Token is a JWT: its claims (iss, sub, aud, and any other), or Invalid when no key of its
// issuer verifies its signature (or it has expired).
type Token struct {
	Invalid bool
	Claims  map[string][]string
}

// Shadow is the verdict of the dry-run policies, as Envoy logs it and enforces nothing.
type Shadow struct {
	Verdict   Verdict `json:"verdict"`
	DecidedBy string  `json:"decidedBy"`
}

// HopTrace is what one proxy did with the request.
type HopTrace struct {
	Proxy string `json:"proxy"`
	// Authentication is what its RequestAuthentications did with the token.
	Authentication string        `json:"authentication,omitempty"`
	Policies       []PolicyTrace `json:"policies,omitempty"`
	Verdict        Verdict       `json:"verdict"`
	DecidedBy      string        `json:"decidedBy,omitempty"`
}

// PolicyTrace is one AuthorizationPolicy as a proxy evaluated it.
type PolicyTrace struct {
	Namespace string      `json:"namespace"`
	Name      string      `json:"name"`
	Action    string      `json:"action"`
	DryRun    bool        `json:"dryRun,omitempty"`
	Provider  string      `json:"provider,omitempty"`
	Rules     []RuleTrace `json:"rules"`
}

// RuleTrace is one rule: whether it matched, and if not the first field that did not.
type RuleTrace struct {
	Rule     int    `json:"rule"`
	Matched  bool   `json:"matched"`
	Mismatch string `json:"mismatch,omitempty"`
	// Skipped says why the proxy does not enforce the rule.
	Skipped string `json:"skipped,omitempty"`
}

// WithPeer returns attrs with the caller's attributes those of peer.
func WithPeer(attrs map[string][]string, peer Request) map[string][]string {
	out := map[string][]string{}
	for k, v := range attrs {
		if !slices.Contains(rulefields.PeerAttributes, k) {
			out[k] = v
		}
	}
	for k, v := range peer {
		if v != "" && v != AnyOther {
			out[k] = []string{v}
		}
	}
	return out
}

// RefusedConnection begins what decided a verdict where no HTTP request was made.
const RefusedConnection = "the connection is refused: "

// ExplainHop is what the proxy of h does with a request of attrs carrying token: its trace, its
// verdict and what decided it, and the verdict of its dry-run policies.
func ExplainHop(h Hop, attrs map[string][]string, token *Token) (HopTrace, Verdict, string, *Shadow) {
	t := HopTrace{Proxy: h.Proxy}
	fail := func(v Verdict, why string) (HopTrace, Verdict, string, *Shadow) {
		t.Verdict, t.DecidedBy = v, why
		return t, v, why, nil
	}
	strict := h.MTLSStrict
	if port := attrs[rulefields.Port]; len(port) > 0 {
		if s, named := h.StrictPorts[port[0]]; named {
			strict = s
		}
	}
	if strict && len(attrs[rulefields.PeerPrincipal]) == 0 {
		if h.HBONEOnly {
			return fail(VerdictDeny, RefusedConnection+"the proxy takes HBONE only, and the caller has no mTLS")
		}
		return fail(VerdictDeny, RefusedConnection+"PeerAuthentication STRICT, and the caller has no mTLS")
	}
	attrs, t.Authentication = authenticate(h, attrs, token)
	if strings.HasPrefix(t.Authentication, "rejected") {
		return fail(VerdictUnauthenticated, "RequestAuthentication: "+t.Authentication)
	}
	var enforced, dryRun []*mesh.AuthorizationPolicy
	for _, ap := range h.APs {
		if IsDryRun(ap) {
			dryRun = append(dryRun, ap)
		} else {
			enforced = append(enforced, ap)
		}
	}
	verdict, decided, traces := authorize(h, enforced, attrs)
	shadowVerdict, shadowDecided, shadowTraces := authorize(h, dryRun, attrs)
	t.Policies = append(traces, shadowTraces...)
	t.Verdict, t.DecidedBy = verdict, decided
	var shadow *Shadow
	if len(dryRun) > 0 {
		shadow = &Shadow{Verdict: shadowVerdict, DecidedBy: shadowDecided}
	}
	return t, verdict, decided, shadow
}

// authenticate is the token check of the proxy of h, as Envoy's jwt_authn filter runs it with the
// providers istiod makes of its RequestAuthentications: a request without a token goes on
// anonymous; a token is accepted by the jwtRule of its issuer, if its audience is one the
// rule lists; any other token is rejected (401). It returns attrs with the token's
// attributes set once accepted, and what happened.
func authenticate(h Hop, attrs map[string][]string, token *Token) (map[string][]string, string) {
	switch {
	case len(h.RAs) == 0 && token != nil:
		return attrs, "no RequestAuthentication here: the token is not read, and no request.auth attribute is set"
	case len(h.RAs) == 0:
		return attrs, ""
	case token == nil:
		return attrs, "no token: the request goes on anonymous (a RequestAuthentication rejects bad tokens only)"
	}
	iss := first(token.Claims["iss"])
	var issuers []string
	for _, ra := range h.RAs {
		for i, r := range ra.Spec.JwtRules {
			issuers = append(issuers, r.Issuer)
			if r.Issuer != iss {
				continue
			}
			at := fmt.Sprintf("RequestAuthentication %s/%s jwtRules[%d]", ra.Namespace, ra.Name, i)
			switch {
			case token.Invalid:
				return attrs, fmt.Sprintf("rejected: the signature is not verified by the keys of %s (Jwt verification fails)", at)
			case len(r.Audiences) > 0 && !slices.ContainsFunc(token.Claims["aud"], func(a string) bool { return slices.Contains(r.Audiences, a) }):
				return attrs, fmt.Sprintf("rejected: the token's audience %v is none of %s's %v (Audiences in Jwt are not allowed)", token.Claims["aud"], at, r.Audiences)
			}
			out := withToken(attrs, token)
			return out, fmt.Sprintf("token accepted by %s (issuer %s)", at, iss)
		}
	}
	return attrs, fmt.Sprintf("rejected: issuer %q is none of the configured %s (Jwt issuer is not configured)", iss, mesh.QuoteList(issuers))
}

// withToken returns attrs with the attributes of an accepted token.
func withToken(attrs map[string][]string, token *Token) map[string][]string {
	out := map[string][]string{}
	for k, v := range attrs {
		out[k] = v
	}
	if iss, sub := first(token.Claims["iss"]), first(token.Claims["sub"]); iss != "" {
		out[rulefields.RequestPrincipal] = []string{iss + "/" + sub}
	}
	for name, values := range token.Claims {
		out["request.auth.claims["+strings.ReplaceAll(name, ".", "][")+"]"] = values
	}
	if aud := token.Claims["aud"]; len(aud) > 0 {
		out["request.auth.audiences"] = aud
	}
	if azp := token.Claims["azp"]; len(azp) > 0 {
		out["request.auth.presenter"] = azp
	}
	return out
}

func first(values []string) string {
	if len(values) == 0 {
		return ""
	}
	return values[0]
}

// authorize evaluates AuthorizationPolicies as the proxy of h does: a matching CUSTOM rule
// leaves the verdict to its provider, a matching DENY rule denies, and where ALLOW
// policies apply only a matching ALLOW rule admits. It returns the verdict, the rule that
// decided it, and every policy's trace.
func authorize(h Hop, aps []*mesh.AuthorizationPolicy, attrs map[string][]string) (Verdict, string, []PolicyTrace) {
	var traces []PolicyTrace
	var custom, denied, allowed string
	allowPolicies := false
	for _, action := range []securityv1beta1.AuthorizationPolicy_Action{securityv1beta1.AuthorizationPolicy_CUSTOM, securityv1beta1.AuthorizationPolicy_DENY, securityv1beta1.AuthorizationPolicy_ALLOW} {
		for _, ap := range aps {
			if ap.Spec.Action != action {
				continue
			}
			pt := PolicyTrace{Namespace: ap.Namespace, Name: ap.Name, Action: action.String(), DryRun: IsDryRun(ap), Provider: ap.Spec.GetProvider().GetName()}
			allowPolicies = allowPolicies || action == securityv1beta1.AuthorizationPolicy_ALLOW
			for i, r := range ap.Spec.Rules {
				rt := ruleTrace(h, ap, r, attrs)
				rt.Rule = i
				pt.Rules = append(pt.Rules, rt)
				if !rt.Matched {
					continue
				}
				name := fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", ap.Namespace, ap.Name, i)
				switch {
				case action == securityv1beta1.AuthorizationPolicy_CUSTOM && custom == "":
					custom = name + " (provider " + pt.Provider + ")"
				case action == securityv1beta1.AuthorizationPolicy_DENY && denied == "":
					denied = name
				case action == securityv1beta1.AuthorizationPolicy_ALLOW && allowed == "":
					allowed = name
				}
			}
			traces = append(traces, pt)
		}
	}
	verdict := Decide(denied != "", allowPolicies, allowed != "", custom != "")
	switch {
	case verdict == VerdictDeny && denied != "":
		return verdict, denied, traces
	case verdict == VerdictDeny:
		return verdict, "no rule of an ALLOW policy matched (rbac_access_denied_matched_policy[none])", traces
	case verdict == VerdictUndetermined:
		return verdict, custom, traces
	case allowed != "":
		return verdict, allowed, traces
	}
	return verdict, "no policy denies it, and no ALLOW policy applies", traces
}

// ruleTrace evaluates one rule as the proxy of h receives it (ztunnelRule at ztunnel).
func ruleTrace(h Hop, ap *mesh.AuthorizationPolicy, r *apRule, attrs map[string][]string) RuleTrace {
	c, skipped := Receive(h.Ztunnel, ap, r)
	if skipped != "" {
		return RuleTrace{Skipped: skipped}
	}
	if miss := mismatch(c, attrs); miss != "" {
		return RuleTrace{Mismatch: miss}
	}
	return RuleTrace{Matched: true}
}

// mismatch returns the first field of rule r that the request does not match, or "" when
// the rule matches: of from, of to (an entry of each must match whole), then of when.
func mismatch(r Rule, attrs map[string][]string) string {
	for _, entries := range [][][]Condition{r.From, r.To} {
		if len(entries) == 0 {
			continue
		}
		firstMiss := ""
		for _, e := range entries {
			miss := conditionsMismatch(e, attrs)
			if miss == "" {
				firstMiss = ""
				break
			}
			if firstMiss == "" {
				firstMiss = miss
			}
		}
		if firstMiss != "" {
			return firstMiss
		}
	}
	return conditionsMismatch(r.When, attrs)
}

// conditionsMismatch returns the first condition the request does not meet, described.
// An attribute with several values (a claim) meets a positive condition if one of them
// matches, a negative one if none does.
func conditionsMismatch(cs []Condition, attrs map[string][]string) string {
	for _, c := range cs {
		values := attrs[c.Attr]
		if c.HoldsFor(values) {
			continue
		}
		has := "no " + c.Attr
		if len(values) > 0 {
			has = c.Attr + " " + strings.Join(values, ", ")
		}
		positive := c
		positive.NotValues = nil
		if !positive.HoldsFor(values) {
			return fmt.Sprintf("%s: the request has %s, none of %s", c.At.Path(nil, false), has, mesh.QuoteList(c.Values))
		}
		return fmt.Sprintf("%s: the request has %s, one of %s", c.At.Path(nil, true), has, mesh.QuoteList(c.NotValues))
	}
	return ""
}
