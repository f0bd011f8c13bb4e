package dataplane

import (
	"fmt"
	"strconv"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// apRule is a rule of an AuthorizationPolicy, as written.
type apRule = securityv1beta1.Rule

// Verdict is what happens to a request.
type Verdict string

const (
	VerdictAllow Verdict = "allow"
	// VerdictDeny is a 403, or a connection refused before any HTTP (mTLS STRICT).
	VerdictDeny Verdict = "deny"
	// VerdictUnauthenticated is a 401: a token was presented, and rejected.
	VerdictUnauthenticated Verdict = "unauthenticated"
	// VerdictUndetermined is left to an external authorizer (a CUSTOM policy).
	VerdictUndetermined Verdict = "undetermined"
)

// DryRunAnnotation switches an AuthorizationPolicy to dry run: Istio logs its verdicts and
// enforces nothing.
const DryRunAnnotation = "istio.io/dry-run"

// IsAllow tells whether ap is an ALLOW policy (the default action).
func IsAllow(ap *mesh.AuthorizationPolicy) bool {
	return ap.Spec.Action == securityv1beta1.AuthorizationPolicy_ALLOW
}

// IsDeny tells whether ap is a DENY policy.
func IsDeny(ap *mesh.AuthorizationPolicy) bool {
	return ap.Spec.Action == securityv1beta1.AuthorizationPolicy_DENY
}

// IsDryRun reads the annotation as Istio does, with strconv.ParseBool: "true", "True",
// "1" and "t" all switch enforcement off.
func IsDryRun(ap *mesh.AuthorizationPolicy) bool {
	v, set := ap.Annotations[DryRunAnnotation]
	if !set { // asked of every policy on every review: no parse error to allocate
		return false
	}
	on, err := strconv.ParseBool(v)
	return err == nil && on
}

// PeerOf is the caller of an mTLS identity: <trust domain>/ns/<namespace>/sa/<name>. It
// is the one reading of a SPIFFE path in the engine.
func PeerOf(principal string) Request {
	p := Request{rulefields.PeerPrincipal: principal}
	if parts := strings.Split(principal, "/"); len(parts) == 5 && parts[1] == "ns" && parts[3] == "sa" {
		p[rulefields.TrustDomain], p[rulefields.Namespace], p[rulefields.ServiceAccount] = parts[0], parts[2], parts[2]+"/"+parts[4]
	}
	return p
}

// String renders a rule as a proxy matches it: "from: (a and b) or (c); to: (d); when: e
// and f", every request where it names nothing.
func (r Rule) String() string {
	var parts []string
	for _, list := range []struct {
		name    string
		entries [][]Condition
	}{{"from", r.From}, {"to", r.To}} {
		if len(list.entries) == 0 {
			continue
		}
		entries := make([]string, len(list.entries))
		for i, e := range list.entries {
			entries[i] = "(" + conditionsString(e) + ")"
		}
		parts = append(parts, list.name+": "+strings.Join(entries, " or "))
	}
	if len(r.When) > 0 {
		parts = append(parts, "when: "+conditionsString(r.When))
	}
	if len(parts) == 0 {
		return "every request"
	}
	return strings.Join(parts, "; ")
}

func conditionsString(cs []Condition) string {
	if len(cs) == 0 {
		return "anything" // an entry with nothing set matches every request
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		var s []string
		if len(c.Values) > 0 {
			s = append(s, fmt.Sprintf("%s in [%s]", c.Attr, strings.Join(c.Values, ", ")))
		}
		if len(c.NotValues) > 0 {
			s = append(s, fmt.Sprintf("%s not in [%s]", c.Attr, strings.Join(c.NotValues, ", ")))
		}
		out[i] = strings.Join(s, " and ")
	}
	return strings.Join(out, " and ")
}
