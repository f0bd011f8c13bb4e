package kindstest

import (
	"os"
	"strings"
	"testing"

	admregv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// TestBaseManifestsAgreeWithTable: the plain manifests grant and review exactly what the
// kinds table says (the Helm chart is checked, rendered, in test/e2e); and a rule taken
// away or added is caught.
func TestBaseManifestsAgreeWithTable(t *testing.T) {
	var role rbacv1.ClusterRole
	var vwc admregv1.ValidatingWebhookConfiguration
	var mwc admregv1.MutatingWebhookConfiguration
	for _, file := range []string{"../../manifests/base/rbac.yaml", "../../manifests/base/webhooks.yaml"} {
		for _, doc := range documents(t, file) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatal(err)
			}
			switch tm.Kind {
			case "ClusterRole":
				var r rbacv1.ClusterRole
				if unmarshal(t, doc, &r); r.Name == "meshguard" { // the read-only role; the audit's writes are apart
					role = r
				}
			case "ValidatingWebhookConfiguration":
				unmarshal(t, doc, &vwc)
			case "MutatingWebhookConfiguration":
				unmarshal(t, doc, &mwc)
			}
		}
	}
	if err := CheckClusterRole(role); err != nil {
		t.Error(err)
	}
	if err := CheckWebhooks(vwc, mwc); err != nil {
		t.Error(err)
	}

	// The checks fail both ways.
	fewer := role.DeepCopy()
	fewer.Rules = fewer.Rules[1:]
	more := role.DeepCopy()
	more.Rules = append(more.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}})
	for name, r := range map[string]*rbacv1.ClusterRole{"a rule less": fewer, "a rule more": more} {
		if err := CheckClusterRole(*r); err == nil {
			t.Errorf("ClusterRole with %s: no error", name)
		}
	}
	noDelete := vwc.DeepCopy()
	noDelete.Webhooks[0].Rules[0].Operations = noDelete.Webhooks[0].Rules[0].Operations[:2]
	oneVersion := vwc.DeepCopy()
	oneVersion.Webhooks[0].Rules[0].APIVersions = []string{"v1"}
	extraMutation := mwc.DeepCopy()
	extraMutation.Webhooks[0].Rules[0].Operations = append(extraMutation.Webhooks[0].Rules[0].Operations, admregv1.Update)
	for name, c := range map[string]struct {
		v    *admregv1.ValidatingWebhookConfiguration
		m    *admregv1.MutatingWebhookConfiguration
		want string
	}{
		"no DELETE of security policies":   {noDelete, &mwc, "lacks [DELETE"},
		"one version of security.istio.io": {oneVersion, &mwc, "want all of [v1 v1beta1]"},
		"Pod UPDATE mutated":               {&vwc, extraMutation, "has beyond it [UPDATE pods."},
	} {
		if err := CheckWebhooks(*c.v, *c.m); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one with %q", name, err, c.want)
		}
	}
}

func documents(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(data), "\n---\n")
}

func unmarshal(t *testing.T, doc string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatal(err)
	}
}
