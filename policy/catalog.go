package policy

import (
	"slices"
	"strings"
)

// Catalog returns every rule, in ID order. Each family of rules lives in its own file.
func Catalog() []Rule {
	rules := slices.Concat(
		requestAuthenticationRules(),
		authorizationPolicyRules(),
		crossResourceRules(),
		scopeRules(),
		podRules(),
		peerAuthenticationRules(),
		controlPlaneRules(),
		ambientRules(),
	)
	slices.SortFunc(rules, func(a, b Rule) int { return strings.Compare(a.ID, b.ID) })
	return rules
}
