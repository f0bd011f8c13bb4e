// Package policy is meshguard's engine: it judges Istio security configuration against the
// state around it and returns findings. It is pure: no I/O, no Kubernetes client, no globals.
// The webhook feeds it the live cluster, `meshguard check` a bundle of manifests.
package policy

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Operation is the admission operation under review. Audit judges an object as it stands,
// as `meshguard check` does for every object of a bundle.
type Operation string

const (
	Audit  Operation = "AUDIT"
	Create Operation = "CREATE"
	Update Operation = "UPDATE"
	Delete Operation = "DELETE"
)

// Finding is one thing a rule found.
type Finding struct {
	Rule   string `json:"rule"`   // stable ID, e.g. MG101
	Name   string `json:"name"`   // stable name, e.g. ra-missing-audiences
	Action Action `json:"action"` // deny or warn; "off" findings are never returned

	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	ObjectName string `json:"objectName"`
	// Object is the object the finding is about, for callers that map it back to a source.
	Object metav1.Object `json:"-"`

	Field   string `json:"field"`   // JSON path of the offending field, e.g. spec.jwtRules[0].audiences
	Message string `json:"message"` // what goes wrong at runtime: who gets in, or who is locked out
	Fix     string `json:"fix"`     // how to fix it

	// Suppressed is set where the object accepts the finding (SuppressAnnotationPrefix):
	// it is reported, and blocks nothing.
	Suppressed *Suppression `json:"suppressed,omitempty"`
}

// Suppression is why a finding was accepted on its object.
type Suppression struct {
	Reason string `json:"reason"`
}

// SuppressAnnotationPrefix, followed by a rule ID, is the annotation with which an
// object accepts that rule's findings on it; its value, the reason, is required. A warn
// finding is suppressed so; a deny finding only where a MeshGuardrail governing the
// namespace names the rule in spec.suppressible.
const SuppressAnnotationPrefix = "ignore.meshguard.io/"

// Rule is one entry of the catalog.
type Rule struct {
	ID      string
	Name    string
	Default Action
	// Kinds are the kinds of object the rule judges.
	Kinds []string
	// Summary says what the rule finds; Why, what happens at runtime if it is left.
	Summary string
	Why     string
	// Check returns the rule's findings for the object under review. A finding may carry
	// its own Action where the rule's default depends on what it found (MG104, MG302, ...).
	Check func(c *Context) []Finding
	// Label, on a rule that changes objects instead of judging them (MG501), returns the
	// labels a new workload lacks under the settings in force, and the guardrails that ask
	// for them (Engine.CoverageLabels).
	Label func(s Settings, w *Workload) (missing map[string]string, guardrails []string)
	// OnDelete rules also judge deletions; the others judge only what is created or kept.
	OnDelete bool
}

// judge adapts a check of one kind of object to Rule.Check.
func judge[T metav1.Object](check func(c *Context, o T) []Finding) func(*Context) []Finding {
	return func(c *Context) []Finding {
		if o, ok := c.Object.(T); ok {
			return check(c, o)
		}
		return nil
	}
}

// finding is a finding at a field, with the rule's default action.
func finding(at *field.Path, message, fix string) Finding {
	return Finding{Field: at.String(), Message: message, Fix: fix}
}

// as sets the finding's action where the rule's default depends on what it found.
func (f Finding) as(a Action) Finding {
	f.Action = a
	return f
}

// ref names an object for messages: Kind ns/name.
func ref(o metav1.Object) string {
	if o.GetNamespace() == "" {
		return KindOf(o) + " " + o.GetName()
	}
	return KindOf(o) + " " + o.GetNamespace() + "/" + o.GetName()
}
