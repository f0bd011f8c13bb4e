package e2e

import (
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

type jwtRule = securityv1beta1.JWTRule

func selector(app string) *typev1beta1.WorkloadSelector {
	return &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": app}}
}

// requirePrincipal is an ALLOW rule that needs a token from the given principal pattern.
func requirePrincipal(principal string) []*securityv1beta1.Rule {
	return []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{RequestPrincipals: []string{principal}}}}}}
}
