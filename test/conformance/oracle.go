package conformance

import (
	"fmt"

	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttppb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/security/authz/builder"
	"istio.io/istio/pilot/pkg/security/trustdomain"
	"istio.io/istio/pilot/pkg/serviceregistry/provider"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/labels"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/config/validation"
)

// rootNamespace is the mesh's root namespace in every case.
const rootNamespace = "istio-system"

// namedPolicy is an AuthorizationPolicy as the cases write it.
type namedPolicy struct {
	name, namespace string
	annotations     map[string]string
	spec            *securityv1beta1.AuthorizationPolicy
}

// valid tells whether istiod's validation admits the policy (its webhook refuses the
// others, which then never reach a proxy).
func (p namedPolicy) valid() bool {
	_, err := validation.ValidateAuthorizationPolicy(config.Config{
		Meta: config.Meta{GroupVersionKind: gvk.AuthorizationPolicy, Name: p.name, Namespace: p.namespace, Annotations: p.annotations},
		Spec: p.spec,
	})
	return err == nil
}

// sidecarRBAC is the RBAC istiod gives the sidecar of a workload of namespace ns with
// labels: the HTTP filters of its inbound chains, as listener_builder.go builds them
// (authz.NewBuilder with the mesh's trust domain, principals matched as authenticated).
func sidecarRBAC(policies []namedPolicy, ns string, workloadLabels map[string]string) ([]*rbacpb.RBAC, error) {
	return istiodRBAC(policies, model.PolicyMatcherFor(ns, labels.Instance(workloadLabels), false), builder.Option{})
}

// waypointRBAC is the RBAC istiod gives waypoint gateway of namespace ns for the chain of
// Service service: listener_waypoint.go builds it with NewBuilderForService, the caller's
// identity read from the filter state HBONE sets.
func waypointRBAC(policies []namedPolicy, ns, gateway, service string) ([]*rbacpb.RBAC, error) {
	waypoint := labels.Instance{"gateway.networking.k8s.io/gateway-name": gateway}
	svc := &model.Service{Attributes: model.ServiceAttributes{Name: service, Namespace: ns, ServiceRegistry: provider.Kubernetes}}
	return istiodRBAC(policies, model.PolicyMatcherFor(ns, waypoint, true).WithService(svc), builder.Option{UseFilterState: true})
}

// istiodRBAC is the RBAC of the HTTP filters istiod builds for the policies the matcher
// selects.
func istiodRBAC(policies []namedPolicy, m model.WorkloadPolicyMatcher, option builder.Option) ([]*rbacpb.RBAC, error) {
	aps := &model.AuthorizationPolicies{NamespaceToPolicies: map[string][]model.AuthorizationPolicy{}, RootNamespace: rootNamespace}
	for _, p := range policies {
		aps.NamespaceToPolicies[p.namespace] = append(aps.NamespaceToPolicies[p.namespace],
			model.AuthorizationPolicy{Name: p.name, Namespace: p.namespace, Annotations: p.annotations, Spec: p.spec})
	}
	matched := aps.ListAuthorizationPolicies(m.WithRootNamespace(rootNamespace))
	b := builder.New(trustdomain.NewBundle("cluster.local", nil), nil, matched, option)
	if b == nil {
		return nil, nil
	}
	var out []*rbacpb.RBAC
	for _, f := range b.BuildHTTP() {
		var cfg rbachttppb.RBAC
		if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
			return nil, fmt.Errorf("filter %s: %w", f.GetName(), err)
		}
		if cfg.GetRules() != nil {
			out = append(out, cfg.GetRules())
		}
	}
	return out, nil
}

// envoyAllows is the verdict of Envoy's RBAC filters, in order: a DENY filter denies when
// a policy matches, an ALLOW filter when none does, a LOG filter does nothing. It names
// the policy that decided, "" where none did.
func envoyAllows(filters []*rbacpb.RBAC, r envoyRequest) (allowed bool, by string, err error) {
	for _, f := range filters {
		var matched string
		for name, p := range f.GetPolicies() {
			ok, err := policyMatches(p, r)
			if err != nil {
				return false, "", fmt.Errorf("%s: %w", name, err)
			}
			if ok && (matched == "" || name < matched) {
				matched = name
			}
		}
		switch f.GetAction() {
		case rbacpb.RBAC_DENY:
			if matched != "" {
				return false, matched, nil
			}
		case rbacpb.RBAC_ALLOW:
			if matched == "" {
				return false, "", nil
			}
			by = matched
		}
	}
	return true, by, nil
}
