package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// reviews serves AdmissionReviews to a handler: it reads the envelope once, with the JSON
// decoder meshguard reads objects with, and answers in the same envelope.
// controller-runtime's admission.Webhook reads the body twice through the scheme's generic
// decoder (once for its type, once for its content), which took about two thirds of what a
// review cost; meshguard's webhook configurations ask for admission.k8s.io/v1 only, so
// there is nothing to convert.
type reviews struct {
	handler admission.Handler
	log     logr.Logger
}

var reviewKind = admissionv1.SchemeGroupVersion.WithKind("AdmissionReview")

// maxReviewBody bounds a review read without the limiter in front (which bounds it
// tighter): two objects of etcd's largest, and the rest, as controller-runtime reasons.
const maxReviewBody = 7 << 20

func (rv reviews) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	review, err := readReview(r)
	if err != nil {
		rv.log.Error(err, "bad admission request")
		rv.write(w, admission.Errored(http.StatusBadRequest, err))
		return
	}
	req := admission.Request{AdmissionRequest: *review.Request}
	resp := rv.handler.Handle(withForwarded(r.Context(), r), req)
	if err := resp.Complete(req); err != nil {
		rv.log.Error(err, "completing the admission response", "uid", req.UID)
		resp = admission.Errored(http.StatusInternalServerError, err)
		resp.UID = req.UID
	}
	rv.write(w, resp)
}

// readReview decodes a request's AdmissionReview, which must carry a request.
func readReview(r *http.Request) (*admissionv1.AdmissionReview, error) {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return nil, fmt.Errorf("contentType=%s, expected application/json", ct)
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, errors.New("request body is empty")
	}
	if r.ContentLength > maxReviewBody {
		return nil, fmt.Errorf("the request body is too large: over %d bytes", maxReviewBody)
	}
	var body []byte
	var err error
	if held, ok := r.Body.(heldBody); ok {
		body = held.bytes
	} else {
		body, err = readBody(r, maxReviewBody)
	}
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading the request body: %w", err)
	case len(body) > maxReviewBody:
		return nil, fmt.Errorf("the request body is too large: over %d bytes", maxReviewBody)
	}
	var review admissionv1.AdmissionReview
	if err := jsonv2.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("not an AdmissionReview: %w", err)
	}
	if gvk := review.GroupVersionKind(); gvk != reviewKind {
		return nil, fmt.Errorf("%s is not an %s", gvk, reviewKind)
	}
	if review.Request == nil {
		return nil, errors.New("the AdmissionReview has no request")
	}
	return &review, nil
}

// write answers in an admission.k8s.io/v1 AdmissionReview.
func (rv reviews) write(w http.ResponseWriter, resp admission.Response) {
	out := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
	out.SetGroupVersionKind(reviewKind)
	body, err := json.Marshal(out)
	if err != nil { // an AdmissionResponse always encodes
		rv.log.Error(err, "encoding the admission response")
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(append(body, '\n')); err != nil {
		rv.log.V(1).Info("writing the admission response", "error", err.Error())
	}
}
