package policy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/check"
	"github.com/meshguard/meshguard/policy"
)

// TestGolden runs every fixture in testdata: MGxxx-invalid.yaml must give at least one
// finding of rule MGxxx, MGxxx-valid.yaml none. A fixture whose first line is
// "# review: UPDATE" or "# review: DELETE" is an admission review: its last document is the
// new object (UPDATE) or names the object deleted (DELETE), the others are the live state.
func TestGolden(t *testing.T) {
	engine := policy.NewEngine()
	for _, rule := range engine.Rules() {
		for _, kind := range []string{"valid", "invalid"} {
			file := filepath.Join("testdata", rule.ID+"-"+kind+".yaml")
			t.Run(rule.ID+"-"+kind, func(t *testing.T) {
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatalf("every rule needs a %s fixture: %v", kind, err)
				}
				found := goldenFindings(t, engine, rule.ID, data, false)
				// The webhook's cache keeps only the annotations the rules read: with no
				// others, every fixture must be judged alike.
				if cached := goldenFindings(t, engine, rule.ID, data, true); cached != found {
					t.Errorf("%s: %d %s findings, %d with only the annotations the rules read (policy.ReadAnnotations)", file, found, rule.ID, cached)
				}
				if kind == "invalid" && found == 0 {
					t.Errorf("%s: no %s finding; want at least one", file, rule.ID)
				}
				if kind == "valid" && found > 0 {
					t.Errorf("%s: %d %s findings; want none", file, found, rule.ID)
				}
			})
		}
	}
}

// goldenFindings counts the findings of one rule for a fixture; readAnnotationsOnly drops
// every annotation of its objects that the rules do not read.
func goldenFindings(t *testing.T, engine *policy.Engine, id string, data []byte, readAnnotationsOnly bool) int {
	t.Helper()
	loadFixture := func(data []byte) *check.Bundle {
		b := load(t, engine, data)
		if readAnnotationsOnly {
			for _, o := range b.Objects {
				o.SetAnnotations(policy.ReadAnnotations(o.GetAnnotations()))
			}
		}
		return b
	}
	op, _, _ := strings.Cut(strings.TrimPrefix(string(firstLine(data)), "# review: "), " ")
	if !bytes.HasPrefix(data, []byte("# review: ")) {
		bundle := loadFixture(data)
		if id == "MG501" {
			// MG501 is the mutation: an invalid fixture holds a Pod it labels.
			n := 0
			for _, o := range bundle.Objects {
				if w, ok := o.(*policy.Workload); ok {
					if missing, _ := engine.CoverageLabels(bundle.State, w); missing != nil {
						n++
					}
				}
			}
			return n
		}
		n := 0
		for _, r := range check.Run(engine, bundle).Results {
			if r.Rule == id {
				n++
			}
		}
		return n
	}
	cut := bytes.LastIndex(data, []byte("\n---\n"))
	live := loadFixture(data[:cut])
	change := loadFixture(data[cut+len("\n---\n"):])
	if len(change.Objects) != 1 {
		t.Fatalf("the last document of a review fixture must be one object, got %d", len(change.Objects))
	}
	subject := change.Objects[0]
	var old metav1.Object
	for _, o := range live.Objects {
		if o.GetName() == subject.GetName() && o.GetNamespace() == subject.GetNamespace() && policy.KindOf(o) == policy.KindOf(subject) {
			old = o
		}
	}
	if old == nil {
		t.Fatalf("review fixture: no live object for %s/%s", subject.GetNamespace(), subject.GetName())
	}
	r := policy.Review{Operation: policy.Operation(op), Object: subject, OldObject: old, State: live.State}
	if r.Operation == policy.Delete {
		r.Object = old
	}
	n := 0
	for _, f := range engine.Review(r) {
		if f.Rule == id {
			n++
		}
	}
	return n
}

func firstLine(data []byte) []byte {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	return line
}

func load(t *testing.T, engine *policy.Engine, data []byte) *check.Bundle {
	t.Helper()
	l := &check.Loader{Namespace: "default", Stdin: bytes.NewReader(data), Engine: engine}
	b, err := l.Load("-")
	if err != nil {
		t.Fatal(err)
	}
	return b
}
