package webhook

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshguard/meshguard/policy"
)

// Metrics are meshguard's Prometheus counters, beside controller-runtime's webhook latency
// and request metrics. A nil *Metrics records nothing.
type Metrics struct {
	reviews  *prometheus.CounterVec
	findingC *prometheus.CounterVec
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
	}
	reg.MustRegister(m.reviews, m.findingC)
	return m
}

func (m *Metrics) observe(webhook string, req admission.Request, resp admission.Response) {
	if m == nil {
		return
	}
	m.reviews.WithLabelValues(webhook, req.Kind.Kind, string(req.Operation), strconv.FormatBool(resp.Allowed), strconv.FormatBool(dryRun(req))).Inc()
}

func (m *Metrics) findings(fs []policy.Finding, dryRun bool) {
	if m == nil {
		return
	}
	for _, f := range fs {
		m.findingC.WithLabelValues(f.Rule, string(f.Action), f.Kind, strconv.FormatBool(dryRun)).Inc()
	}
}
