// Package kindstest holds the kinds table to meshguard's manifests: a ClusterRole must
// grant reading exactly the kinds the cache watches, and the webhook configurations must
// send exactly the kinds and operations the table reviews. Both the plain manifests and the
// rendered Helm chart are checked with it.
package kindstest

import (
	"fmt"
	"slices"
	"strings"

	admregv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/meshguard/meshguard/kinds"
)

// grant is one thing asked of the API server: a verb (or an admission operation) on a
// resource of a group.
type grant struct{ group, resource, verb string }

func (g grant) String() string { return fmt.Sprintf("%s %s.%s", g.verb, g.resource, g.group) }

// readVerbs are what the informer cache does with a kind.
var readVerbs = []string{"get", "list", "watch"}

// CheckClusterRole reports the difference between what role grants and what the cache
// needs: get, list and watch of every cached kind, and nothing else.
func CheckClusterRole(role rbacv1.ClusterRole) error {
	var want []grant
	for _, k := range kinds.Cached() {
		for _, verb := range readVerbs {
			want = append(want, grant{k.Group, k.Resource, verb})
		}
	}
	var got []grant
	for _, r := range role.Rules {
		for _, group := range r.APIGroups {
			for _, resource := range r.Resources {
				for _, verb := range r.Verbs {
					got = append(got, grant{group, resource, verb})
				}
			}
		}
	}
	return difference("ClusterRole "+role.Name, want, got)
}

// CheckWebhooks reports the difference between the rules of the webhook configurations
// and what the table reviews: each kind's Validate and Mutate operations, at every version
// it is read at.
func CheckWebhooks(vwc admregv1.ValidatingWebhookConfiguration, mwc admregv1.MutatingWebhookConfiguration) error {
	var validating, mutating []admregv1.RuleWithOperations
	for _, w := range vwc.Webhooks {
		validating = append(validating, w.Rules...)
	}
	for _, w := range mwc.Webhooks {
		mutating = append(mutating, w.Rules...)
	}
	var errs []string
	for _, c := range []struct {
		name       string
		rules      []admregv1.RuleWithOperations
		operations func(*kinds.Kind) []string
		validating bool
	}{
		{"ValidatingWebhookConfiguration " + vwc.Name, validating, func(k *kinds.Kind) []string { return operations(k.Validate) }, true},
		{"MutatingWebhookConfiguration " + mwc.Name, mutating, func(k *kinds.Kind) []string { return operations(k.Mutate) }, false},
	} {
		var want, got []grant
		for _, k := range kinds.All() {
			for _, op := range c.operations(k) {
				want = append(want, grant{k.Group, k.Resource, op})
				if k.StatusLabels && op == "UPDATE" && c.validating {
					want = append(want, grant{k.Group, k.Resource + "/status", op})
				}
			}
		}
		for _, r := range c.rules {
			for _, group := range r.APIGroups {
				for _, resource := range r.Resources {
					if k := byResource(group, resource); k != nil && !allVersions(r.APIVersions, k.Versions) {
						errs = append(errs, fmt.Sprintf("%s: %s.%s at versions %v, want all of %v", c.name, resource, group, r.APIVersions, k.Versions))
					}
					for _, op := range r.Operations {
						got = append(got, grant{group, resource, string(op)})
					}
				}
			}
		}
		if err := difference(c.name, want, got); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

func operations[T ~string](ops []T) []string {
	s := make([]string, len(ops))
	for i, op := range ops {
		s[i] = string(op)
	}
	return s
}

func byResource(group, resource string) *kinds.Kind {
	resource, _, _ = strings.Cut(resource, "/") // a subresource is its kind's
	for _, k := range kinds.All() {
		if k.Group == group && k.Resource == resource {
			return k
		}
	}
	return nil
}

func allVersions(ruleVersions, versions []string) bool {
	if slices.Contains(ruleVersions, "*") {
		return true
	}
	for _, v := range versions {
		if !slices.Contains(ruleVersions, v) {
			return false
		}
	}
	return true
}

// difference names what want has and got lacks, and the reverse.
func difference(what string, want, got []grant) error {
	var missing, extra []string
	for _, g := range want {
		if !slices.Contains(got, g) {
			missing = append(missing, g.String())
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g.String())
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return nil
	}
	return fmt.Errorf("%s disagrees with the kinds table: lacks %v; has beyond it %v", what, missing, extra)
}
