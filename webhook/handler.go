package webhook

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/policy"
)

// Paths the webhook serves.
const (
	ValidatePath = "/validate"
	MutatePath   = "/mutate"
)

// maxWarningLength keeps warnings whole in kubectl (the API server advises 120 characters).
const maxWarningLength = 120

// Server judges admission requests. It is safe for concurrent use.
type Server struct {
	Engine *policy.Engine
	// Reader is the informer cache the live state is read from.
	Reader client.Reader
	// Views keep per-namespace state between requests (see Views.Watch); nil builds it for
	// every request from Reader.
	Views *Views
	// Synced is set once every informer cache has synced: until then security resources are
	// denied ("meshguard is starting") rather than judged on a partial view.
	Synced *atomic.Bool
	// IstiodVersions are the Istio control-plane versions judged by MG701, when known.
	IstiodVersions []string
	Log            logr.Logger
	Metrics        *Metrics
}

func (s *Server) state(ctx context.Context) *liveState {
	views := s.Views
	if views == nil {
		views = NewViews(s.Reader)
	}
	return &liveState{ctx: ctx, views: views, istiod: s.IstiodVersions}
}

// Validating returns the validating admission handler.
func (s *Server) Validating() admission.Handler {
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		return s.guard(req, "validate", func() admission.Response { return s.validate(ctx, req) })
	})
}

// Mutating returns the mutating admission handler: coverage labels on new Pods.
func (s *Server) Mutating() admission.Handler {
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		return s.guard(req, "mutate", func() admission.Response { return s.mutate(ctx, req) })
	})
}

// guard records the request and turns a panic into a denial: the last line of defence, so
// that one bad request never takes the server down nor slips through.
func (s *Server) guard(req admission.Request, webhook string, handle func() admission.Response) (resp admission.Response) {
	defer func() {
		if p := recover(); p != nil {
			s.Log.Error(fmt.Errorf("panic: %v", p), "judging request", "webhook", webhook, "uid", req.UID, "kind", req.Kind.Kind)
			resp = admission.Errored(http.StatusInternalServerError, errors.New("meshguard failed to judge this request; see its logs"))
		}
		s.Metrics.observe(webhook, req, resp)
	}()
	return handle()
}

func (s *Server) validate(ctx context.Context, req admission.Request) admission.Response {
	st := s.state(ctx)
	var stored storedObject
	if s.Synced.Load() {
		stored = st.stored
	}
	obj, old, errResp := decodeRequest(req, stored)
	if errResp != nil {
		return *errResp
	}
	if g, ok := obj.(*policy.MeshGuardrail); ok {
		if req.Operation != admissionv1.Delete {
			if errs := s.Engine.ValidateGuardrail(g); len(errs) > 0 {
				return admission.Denied(fmt.Sprintf("meshguard: MeshGuardrail %q is invalid: %v", g.Name, errs.ToAggregate()))
			}
		}
		return admission.Allowed("")
	}
	if !s.Synced.Load() {
		// Only the security kinds fail closed: Pods, and the Services, Namespaces and
		// Gateways reviewed for their waypoint bindings, are not held up while meshguard
		// starts, as they are not while it is down.
		if k := kinds.Lookup(req.Kind.Group, req.Kind.Kind); k != nil && k.Role != kinds.Policy {
			return admission.Allowed("").WithWarnings("meshguard is starting: this change was not judged")
		}
		return admission.Denied("meshguard is starting: its caches have not synced yet; retry in a few seconds")
	}
	// On DELETE, decodeRequest gives the old object as obj.
	findings := s.Engine.Review(policy.Review{Operation: policy.Operation(req.Operation), Object: obj, OldObject: old, State: st})
	s.Metrics.findings(findings, dryRun(req))
	if err := st.Err(); err != nil {
		s.Log.Error(err, "reading the cache", "uid", req.UID)
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("meshguard could not read the cluster state: %w", err))
	}
	return respond(findings, dryRun(req))
}

func (s *Server) mutate(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return admission.Allowed("")
	}
	if !s.Synced.Load() {
		// The Pod webhook fails open (see manifests): the validating side still holds MG502.
		return admission.Allowed("").WithWarnings("meshguard is starting: coverage labels were not added to this Pod")
	}
	st := s.state(ctx)
	// Most namespaces ask for no labels: their Pods are answered without being decoded.
	if !s.Engine.LabelsPods(st, req.Namespace) {
		if err := st.Err(); err != nil {
			return admission.Errored(http.StatusInternalServerError, fmt.Errorf("meshguard could not read the cluster state: %w", err))
		}
		return admission.Allowed("")
	}
	obj, _, errResp := decodeRequest(req, nil)
	if errResp != nil {
		return *errResp
	}
	w := obj.(*policy.Workload) // the Pod decoder makes workloads
	labelling := s.Engine.CoverageLabels(st, w)
	if err := st.Err(); err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("meshguard could not read the cluster state: %w", err))
	}
	if labelling == nil {
		return admission.Allowed("")
	}
	// Idempotent: only what is missing is added, so reinvocation changes nothing.
	var patches []jsonpatch.JsonPatchOperation
	if w.Labels == nil {
		patches = append(patches, jsonpatch.NewOperation("add", "/metadata/labels", map[string]string{}))
	}
	for _, k := range slices.Sorted(maps.Keys(labelling.Labels)) {
		patches = append(patches, jsonpatch.NewOperation("add", "/metadata/labels/"+escapePointer(k), labelling.Labels[k]))
	}
	if w.Annotations == nil {
		patches = append(patches, jsonpatch.NewOperation("add", "/metadata/annotations", map[string]string{}))
	}
	guardrails := strings.Join(labelling.Guardrails, ",")
	patches = append(patches, jsonpatch.NewOperation("add", "/metadata/annotations/"+escapePointer(policy.CoveredByAnnotation), guardrails))
	resp := admission.Patched("", patches...)
	resp.AuditAnnotations = map[string]string{"coverage": labelling.Rule + " " + guardrails}
	return resp
}

// decodeRequest decodes the object and the old object of a request; stored, when given,
// finds the old object in the cache (see decodeOld).
func decodeRequest(req admission.Request, stored storedObject) (obj, old metav1.Object, errResp *admission.Response) {
	fail := func(err error) (metav1.Object, metav1.Object, *admission.Response) {
		r := admission.Errored(http.StatusBadRequest, err)
		return nil, nil, &r
	}
	kind := kinds.Lookup(req.Kind.Group, req.Kind.Kind)
	if kind == nil {
		return fail(fmt.Errorf("meshguard does not judge %s.%s", req.Kind.Kind, req.Kind.Group))
	}
	if !kind.Serves(req.Kind.Version) {
		return fail(fmt.Errorf("meshguard does not read %s at version %q (it reads %s)", kind, req.Kind.Version, strings.Join(kind.Versions, ", ")))
	}
	var err error
	if obj, err = decode(kind, req.Object); err != nil {
		return fail(err)
	}
	if old, err = decodeOld(kind, req.OldObject, stored); err != nil {
		return fail(err)
	}
	if obj == nil && old == nil {
		return fail(fmt.Errorf("the request carries no object"))
	}
	if obj == nil {
		obj = old
	}
	return obj, old, nil
}

func dryRun(req admission.Request) bool { return req.DryRun != nil && *req.DryRun }

// respond encodes findings: denied when any denies, warnings for the rest, rule IDs in the
// audit log either way.
func respond(findings []policy.Finding, dryRun bool) admission.Response {
	var denials, warnings, audit []string
	for _, f := range findings {
		audit = append(audit, f.Rule+"="+string(f.Action))
		if f.Action == policy.Deny {
			denials = append(denials, fmt.Sprintf("%s %s at %s: %s. Fix: %s.", f.Rule, f.Name, f.Field, f.Message, f.Fix))
		} else {
			warnings = append(warnings, warning(f))
		}
	}
	resp := admission.Allowed("")
	if len(denials) > 0 {
		f := findings[0]
		msg := fmt.Sprintf("meshguard denied %s %s/%s:\n- %s", f.Kind, f.Namespace, f.ObjectName, strings.Join(denials, "\n- "))
		if dryRun {
			msg += "\n(dry run: nothing was written)"
		}
		resp = admission.Denied(msg)
		resp.Result.Reason = metav1.StatusReasonForbidden
	}
	if len(audit) > 0 {
		resp.AuditAnnotations = map[string]string{"findings": strings.Join(audit, ",")}
	}
	return resp.WithWarnings(warnings...)
}

// warning renders a finding in at most maxWarningLength characters.
func warning(f policy.Finding) string {
	w := fmt.Sprintf("%s %s: %s", f.Rule, f.Name, f.Message)
	if len(w) <= maxWarningLength {
		return w
	}
	cut := strings.LastIndex(w[:maxWarningLength-len("…")], " ")
	if cut < len(f.Rule) {
		cut = maxWarningLength - len("…")
	}
	return w[:cut] + "…"
}

// escapePointer escapes a JSON pointer token (RFC 6901): label keys hold "/".
func escapePointer(s string) string { return pointerEscaper.Replace(s) }

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
