package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// TestReviewsAnswerAsControllerRuntime: meshguard's own reading of the AdmissionReview
// envelope answers every review as controller-runtime's admission.Webhook does (verdict,
// status, warnings, patch, UID, audit annotations), and refuses what is no v1
// AdmissionReview with a 400 in an AdmissionReview.
func TestReviewsAnswerAsControllerRuntime(t *testing.T) {
	srv := newServer(t, true, raGood, apRequire, shop, coverage)
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop, labels: {app: web}}\nspec: {containers: [{name: app, image: app}]}"
	cases := []struct {
		name    string
		handler admission.Handler
		body    []byte
	}{
		{"deny", srv.Validating(), reviewBody(t, admissionv1.Create, raNoAudiences, "", false)},
		{"allow", srv.Validating(), reviewBody(t, admissionv1.Create, raGood, "", false)},
		{"update", srv.Validating(), reviewBody(t, admissionv1.Update, apRequire, apRequire, true)},
		{"delete", srv.Validating(), reviewBody(t, admissionv1.Delete, "", raGood, true)}, // a dry run: the same review twice
		{"patch", srv.Mutating(), reviewBody(t, admissionv1.Create, pod, "", false)},
	}
	answer := func(h http.Handler, body []byte, contentType string) (int, *admissionv1.AdmissionResponse) {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		h.ServeHTTP(rec, r)
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil || out.Kind != "AdmissionReview" || out.APIVersion != "admission.k8s.io/v1" {
			t.Fatalf("not an admission.k8s.io/v1 AdmissionReview (HTTP %d): %s", rec.Code, rec.Body.String())
		}
		return rec.Code, out.Response
	}
	for _, c := range cases {
		code, ours := answer(reviews{handler: c.handler}, c.body, "application/json")
		wantCode, theirs := answer(&admission.Webhook{Handler: c.handler}, c.body, "application/json")
		if code != wantCode || !reflect.DeepEqual(ours, theirs) {
			t.Errorf("%s: HTTP %d %+v\ncontroller-runtime: HTTP %d %+v", c.name, code, ours, wantCode, theirs)
		}
		if c.name == "patch" && (ours.PatchType == nil || len(ours.Patch) == 0) {
			t.Errorf("the Pod was not patched: %+v", ours)
		}
	}
	v1beta1 := bytes.Replace(cases[0].body, []byte(`"admission.k8s.io/v1"`), []byte(`"admission.k8s.io/v1beta1"`), 1)
	for name, bad := range map[string]struct {
		body        []byte
		contentType string
	}{
		"not JSON":       {[]byte("{"), "application/json"},
		"no request":     {[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), "application/json"},
		"v1beta1":        {v1beta1, "application/json"},
		"another kind":   {[]byte(`{"apiVersion":"v1","kind":"Pod","request":{}}`), "application/json"},
		"a content type": {cases[0].body, "application/yaml"},
	} {
		if _, r := answer(reviews{handler: srv.Validating()}, bad.body, bad.contentType); r.Allowed || r.Result == nil || r.Result.Code != http.StatusBadRequest {
			t.Errorf("%s: %+v", name, r)
		}
	}
}
