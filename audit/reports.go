package audit

import (
	"fmt"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The report kinds the audit writes. A wgpolicyk8s.io PolicyReport is the schema
// openreports.io's Report was forked from: the same scope, summary and results, without the
// Report's top-level source and configuration. meshguard builds Reports and writes them in
// whichever kind the cluster serves.
var (
	OpenReports   = reportsv1alpha1.SchemeGroupVersion.WithKind("Report")
	PolicyReports = schema.GroupVersionKind{Group: "wgpolicyk8s.io", Version: "v1alpha2", Kind: "PolicyReport"}
)

// ReportsFlag are the values of --audit-reports, and the kind each one writes.
var ReportsFlag = map[string][]schema.GroupVersionKind{
	"auto":        {OpenReports, PolicyReports},
	"openreports": {OpenReports},
	"wgpolicyk8s": {PolicyReports},
	"none":        nil,
}

// ReportKind is the kind the audit writes for a --audit-reports value: the first of its
// kinds the cluster serves. Where it serves none, auto turns the audit off (the zero kind,
// no error) and a named kind is an error.
func ReportKind(mapper meta.RESTMapper, flag string) (schema.GroupVersionKind, error) {
	candidates, ok := ReportsFlag[flag]
	if !ok {
		return schema.GroupVersionKind{}, fmt.Errorf("--audit-reports %q: want auto, openreports, wgpolicyk8s or none", flag)
	}
	var missing error
	for _, gvk := range candidates {
		_, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil {
			return gvk, nil
		}
		missing = err
	}
	if flag == "auto" || missing == nil {
		return schema.GroupVersionKind{}, nil
	}
	return schema.GroupVersionKind{}, fmt.Errorf("--audit-reports=%s: the cluster does not serve %s: %w", flag, candidates[0].GroupKind(), missing)
}

// encode is a Report as an object of kind.
func encode(kind schema.GroupVersionKind, r *reportsv1alpha1.Report) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(r)
	if err != nil {
		return nil, err
	}
	if kind != OpenReports {
		delete(m, "source")
		delete(m, "configuration")
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(kind)
	return u, nil
}

// decode reads an object of either kind as a Report.
func decode(u *unstructured.Unstructured) (*reportsv1alpha1.Report, error) {
	var r reportsv1alpha1.Report
	err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r)
	return &r, err
}
