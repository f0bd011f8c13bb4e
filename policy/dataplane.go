package policy

import "github.com/meshguard/meshguard/policy/dataplane"

// What the proxies do with a class of request (policy/dataplane), under the names the
// engine and the front doors know it by.
type (
	Verdict       = dataplane.Verdict
	Token         = dataplane.Token
	Shadow        = dataplane.Shadow
	HopTrace      = dataplane.HopTrace
	PolicyTrace   = dataplane.PolicyTrace
	RuleTrace     = dataplane.RuleTrace
	request       = dataplane.Request
	compiledRule  = dataplane.Rule
	protection    = dataplane.Protection
	workloadFacts = dataplane.Facts
)

const (
	VerdictAllow           = dataplane.VerdictAllow
	VerdictDeny            = dataplane.VerdictDeny
	VerdictUnauthenticated = dataplane.VerdictUnauthenticated
	VerdictUndetermined    = dataplane.VerdictUndetermined

	DryRunAnnotation = dataplane.DryRunAnnotation
)
