package webhook

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/policy"
)

// Metrics are meshguard's Prometheus counters, beside controller-runtime's webhook latency
// and request metrics. A nil *Metrics records nothing.
type Metrics struct {
	reviews  *prometheus.CounterVec
	findingC *prometheus.CounterVec
	refusals *prometheus.CounterVec
	// conflicts counts writes judged again because another write was allowed first.
	conflicts prometheus.Counter
	// forwardFailures counts the writes the leader could not judge, judged here instead.
	forwardFailures prometheus.Counter
	// cacheWaits counts the writes that waited for the cache to show writes before them.
	cacheWaits prometheus.Counter
}

// NewMetrics registers meshguard's counters with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshguard_admission_reviews_total",
			Help: "Admission reviews answered, by webhook, kind, operation, verdict and dry run.",
		}, []string{"webhook", "kind", "operation", "allowed", "dry_run"}),
		findingC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshguard_findings_total",
			Help: "Findings at admission, by rule, action, kind and dry run.",
		}, []string{"rule", "action", "kind", "dry_run"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshguard_requests_refused_total",
			Help: "Requests refused before review by the server's limits, by reason: busy, too large, unread.",
		}, []string{"reason"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshguard_write_conflicts_total",
			Help: "Security policy writes judged again because another write that may open was allowed first in a namespace they read.",
		}),
		forwardFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshguard_forward_failures_total",
			Help: "Writes that may open which the leading replica could not judge, judged by the replica they reached instead.",
		}),
		cacheWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshguard_write_cache_waits_total",
			Help: "Security policy writes that met more writes allowed a moment before, not in the cache yet, than they are judged beside, and waited for the cache.",
		}),
	}
	reg.MustRegister(m.reviews, m.findingC, m.refusals, m.conflicts, m.forwardFailures, m.cacheWaits)
	return m
}

func (m *Metrics) observe(webhook string, req admission.Request, resp admission.Response) {
	if m == nil {
		return
	}
	// Labels come from fixed sets, not from what a request says: a crafted kind or
	// operation must not make a new series.
	kind, operation := "other", "other"
	if k := kinds.Lookup(req.Kind.Group, req.Kind.Kind); k != nil {
		kind = k.Kind
	}
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
		operation = string(req.Operation)
	}
	m.reviews.WithLabelValues(webhook, kind, operation, strconv.FormatBool(resp.Allowed), strconv.FormatBool(dryRun(req))).Inc()
}

func (m *Metrics) conflict() {
	if m != nil {
		m.conflicts.Inc()
	}
}

func (m *Metrics) cacheWaited() {
	if m != nil {
		m.cacheWaits.Inc()
	}
}

func (m *Metrics) forwardFailed() {
	if m != nil {
		m.forwardFailures.Inc()
	}
}

func (m *Metrics) refused(reason string) {
	if m == nil {
		return
	}
	m.refusals.WithLabelValues(reason).Inc()
}

func (m *Metrics) findings(fs []policy.Finding, dryRun bool) {
	if m == nil {
		return
	}
	for _, f := range fs {
		m.findingC.WithLabelValues(f.Rule, string(f.Action), f.Kind, strconv.FormatBool(dryRun)).Inc()
	}
}
