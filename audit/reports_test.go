package audit

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshguard/meshguard/policy"
)

// TestReportKind: auto writes openreports.io Reports where the cluster serves them, else
// wgpolicyk8s.io PolicyReports, else nothing; a kind named must be served.
func TestReportKind(t *testing.T) {
	serving := func(kinds ...schema.GroupVersionKind) meta.RESTMapper {
		m := meta.NewDefaultRESTMapper(nil)
		for _, k := range kinds {
			m.Add(k, meta.RESTScopeNamespace)
		}
		return m
	}
	for _, c := range []struct {
		name   string
		mapper meta.RESTMapper
		flag   string
		want   schema.GroupVersionKind
		err    string
	}{
		{"both served", serving(OpenReports, PolicyReports), "auto", OpenReports, ""},
		{"PolicyReports only", serving(PolicyReports), "auto", PolicyReports, ""},
		{"none served", serving(), "auto", schema.GroupVersionKind{}, ""},
		{"PolicyReports named", serving(OpenReports, PolicyReports), "wgpolicyk8s", PolicyReports, ""},
		{"openreports named, not served", serving(PolicyReports), "openreports", schema.GroupVersionKind{}, "does not serve Report.openreports.io"},
		{"unknown value", serving(OpenReports), "kyverno", schema.GroupVersionKind{}, `--audit-reports "kyverno"`},
	} {
		got, err := ReportKind(c.mapper, c.flag)
		if got != c.want || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %v, %v; want %v, %q", c.name, got, err, c.want, c.err)
		}
	}
}

// TestPolicyReportShape: a PolicyReport carries the Report's scope, summary and results,
// and none of the fields wgpolicyk8s.io's schema lacks.
func TestPolicyReportShape(t *testing.T) {
	noAudiences := `{"selector":{"matchLabels":{"app":"web"}},"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys"}]}`
	st := policy.NewSnapshot()
	st.Add(ra(t, "web-jwt", noAudiences))
	r := Desired(policy.NewEngine(), st, st.NamespaceNames())[0]
	u, err := encode(PolicyReports, r)
	if err != nil {
		t.Fatal(err)
	}
	if u.GetAPIVersion() != "wgpolicyk8s.io/v1alpha2" || u.GetKind() != "PolicyReport" {
		t.Errorf("written as %s %s", u.GetAPIVersion(), u.GetKind())
	}
	for _, field := range []string{"source", "configuration"} {
		if _, ok := u.Object[field]; ok {
			t.Errorf("a PolicyReport with %s", field)
		}
	}
	back, err := decode(u)
	if err != nil {
		t.Fatal(err)
	}
	if back.Summary != r.Summary || len(back.Results) != len(r.Results) || back.Results[0].Description != r.Results[0].Description {
		t.Errorf("read back %+v, wrote %+v", back, r)
	}
}
