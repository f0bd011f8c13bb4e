package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/rulefields"
)

type apRule = securityv1beta1.Rule

// match is a place where a rule matches an attribute, and the values it matches. Its path
// is rendered only when a finding names it: most matches are looked at and dropped.
type match struct {
	rule     *field.Path // the rule's path, spec.rules[i]
	fromList bool        // from[index].source.<name>, else when[index].<name>
	index    int
	name     string // the positive form: requestPrincipals, values
	negative bool   // the match is on the negative form: notRequestPrincipals, notValues
	values   []string
}

func (m match) field() *field.Path {
	name := m.name
	if m.negative {
		name = "not" + strings.ToUpper(name[:1]) + name[1:]
	}
	if m.fromList {
		return m.rule.Child("from").Index(m.index).Child("source", name)
	}
	return m.rule.Child("when").Index(m.index).Child(name)
}

// matcher finds where a rule matches one family of attributes: the source fields that
// source returns (positive, negative, name of the positive field) and the `when` keys
// that when accepts.
type matcher struct {
	source func(s *securityv1beta1.Source) (positive, negative []string, name string)
	when   func(key string) bool
}

// jwtMatcher picks the token attributes: requestPrincipals and request.auth.* conditions.
var jwtMatcher = matcher{
	source: func(s *securityv1beta1.Source) ([]string, []string, string) {
		return s.RequestPrincipals, s.NotRequestPrincipals, "requestPrincipals"
	},
	when: rulefields.IsJWT,
}

// positive and negative return where rule r (at spec.rules[i]) matches m's attributes.
func (m matcher) positive(r *apRule, at *field.Path) []match { return m.find(r, at, true) }
func (m matcher) negative(r *apRule, at *field.Path) []match { return m.find(r, at, false) }

func (m matcher) find(r *apRule, at *field.Path, positive bool) []match {
	var out []match
	for j, from := range r.From {
		if from.Source == nil {
			continue
		}
		pos, neg, name := m.source(from.Source)
		vals := pos
		if !positive {
			vals = neg
		}
		if len(vals) > 0 {
			out = append(out, match{rule: at, fromList: true, index: j, name: name, negative: !positive, values: vals})
		}
	}
	for k, w := range r.When {
		if !m.when(w.Key) {
			continue
		}
		vals := w.Values
		if !positive {
			vals = w.NotValues
		}
		if len(vals) > 0 {
			out = append(out, match{rule: at, index: k, name: "values", negative: !positive, values: vals})
		}
	}
	return out
}

type apAction = securityv1beta1.AuthorizationPolicy_Action

const (
	apActionCustom = securityv1beta1.AuthorizationPolicy_CUSTOM
	apActionAudit  = securityv1beta1.AuthorizationPolicy_AUDIT
)

// Actions an AuthorizationPolicy rule check may be limited to.
var (
	allowOnly = []apAction{securityv1beta1.AuthorizationPolicy_ALLOW}
	denyOnly  = []apAction{securityv1beta1.AuthorizationPolicy_DENY}
	// denyOrCustom are the actions that turn away what they match: a CUSTOM policy
	// sends only what it matches to its external check.
	denyOrCustom = []apAction{securityv1beta1.AuthorizationPolicy_DENY, securityv1beta1.AuthorizationPolicy_CUSTOM}
	allowOrDeny  = []apAction{securityv1beta1.AuthorizationPolicy_ALLOW, securityv1beta1.AuthorizationPolicy_DENY}
	anyAction    []apAction // nil: every action
)

// eachAPRule adapts a check of one rule of an AuthorizationPolicy to Rule.Check, for
// policies whose action is among actions (nil: any action).
func eachAPRule(actions []apAction, check func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding) func(*Context) []Finding {
	rules := field.NewPath("spec", "rules") // made once: a review judges many rules
	return judge(func(c *Context, p *AuthorizationPolicy) []Finding {
		if actions != nil && !slices.Contains(actions, p.Spec.Action) {
			return nil
		}
		var out []Finding
		for i, r := range p.Spec.Rules {
			out = append(out, check(c, p, r, rules.Index(i))...)
		}
		return out
	})
}

// perMatch returns one finding for each match.
func perMatch(ms []match, f func(m match) Finding) []Finding {
	out := make([]Finding, 0, len(ms))
	for _, m := range ms {
		out = append(out, f(m))
	}
	return out
}

// requestPrincipals returns where a rule lists request principals positively.
func requestPrincipals(r *apRule, at *field.Path) []match {
	return slices.DeleteFunc(jwtMatcher.positive(r, at), func(m match) bool {
		return !m.fromList
	})
}

// deniesOnClaims tells whether a DENY policy matches token attributes positively: it fires
// only while a RequestAuthentication validates tokens.
func deniesOnClaims(ap *AuthorizationPolicy) bool {
	if !dataplane.IsDeny(ap) || dataplane.IsDryRun(ap) {
		return false
	}
	for _, r := range ap.Spec.Rules {
		if len(jwtMatcher.positive(r, nil)) > 0 {
			return true
		}
	}
	return false
}

// usesToken tells whether an ALLOW or DENY policy matches token attributes at all.
func usesToken(ap *AuthorizationPolicy) bool {
	if !dataplane.IsAllow(ap) && !dataplane.IsDeny(ap) {
		return false
	}
	for _, r := range ap.Spec.Rules {
		if len(jwtMatcher.positive(r, nil))+len(jwtMatcher.negative(r, nil)) > 0 {
			return true
		}
	}
	return false
}

var schemeOnly = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:/?$`)

// splitPrincipal splits a request principal as Istio does since 1.21: at the last "/",
// into the token's iss and sub.
func splitPrincipal(v string) (iss, sub string, ok bool) {
	i := strings.LastIndex(v, "/")
	if i < 0 {
		return "", "", false
	}
	return v[:i], v[i+1:], true
}

// principalProblem says why a requestPrincipals value can never match a token, or "".
func principalProblem(v string) string {
	if v == "*" {
		return ""
	}
	iss, sub, ok := splitPrincipal(v)
	if !ok {
		if strings.HasPrefix(v, "*") || strings.HasSuffix(v, "*") {
			if strings.Contains(strings.Trim(v, "*"), "*") {
				return "a '*' in the middle is a literal character, not a wildcard"
			}
			return ""
		}
		return "has no '/': a request principal is <iss>/<sub>"
	}
	switch {
	case iss == "":
		return "the issuer part (before the last '/') is empty"
	case schemeOnly.MatchString(iss):
		return fmt.Sprintf("Istio splits at the last '/', so the issuer part is %q: a wildcard cannot span issuer and subject", iss)
	case strings.Contains(strings.TrimPrefix(iss, "*"), "*"):
		return fmt.Sprintf("the issuer part %q may start with '*' but holds another '*', which is literal", iss)
	case sub == "":
		return "the subject part (after the last '/') is empty; tokens always carry a sub"
	case strings.Contains(strings.TrimSuffix(sub, "*"), "*"):
		return fmt.Sprintf("the subject part %q may end with '*' but holds another '*', which is literal", sub)
	}
	if e, ok := parseEntra(iss); ok && e.isV1Issuer() && !strings.HasSuffix(iss, "/") {
		return fmt.Sprintf("Istio splits at the last '/', so the issuer part is %q, but v1 Entra tokens carry %q: write %q", iss, iss+"/", iss+"//"+sub)
	}
	return ""
}

// deniesOnClaimsAt tells whether a DENY on token attributes applies to the workload p guards.
func deniesOnClaimsAt(p protection) bool {
	for _, ap := range p.APs {
		if deniesOnClaims(ap) {
			return true
		}
	}
	return false
}
