package products_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/check"
	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/products"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/proxies from what the proxies enforce")

// TestEnforcementGolden pins, in the style of istiod's builder testdata, what each proxy
// enforces for every workload of a bundle (testdata/proxies/NAME.yaml): the sidecar,
// ztunnel, waypoint or gateway, with each rule as it receives it or why it receives none.
// The expected text is NAME.golden.yaml; `go test ./policy/products -run
// TestEnforcementGolden -update` writes it, to be reviewed as a diff.
func TestEnforcementGolden(t *testing.T) {
	bundles, err := filepath.Glob(filepath.Join("testdata", "proxies", "*.yaml"))
	if err != nil || len(bundles) == 0 {
		t.Fatalf("no bundles in testdata/proxies: %v", err)
	}
	for _, file := range bundles {
		if strings.HasSuffix(file, ".golden.yaml") {
			continue
		}
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			bundle, err := (&check.Loader{Namespace: "default", Engine: policy.NewEngine()}).Load(file)
			if err != nil {
				t.Fatal(err)
			}
			got := renderEnforcement(t, bundle)
			golden := strings.TrimSuffix(file, ".yaml") + ".golden.yaml"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (write it with -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from what the proxies enforce now:\n--- want\n%s\n--- got\n%s", golden, want, got)
			}
		})
	}
}

// renderEnforcement is what each proxy enforces for every workload of the bundle, as YAML
// keyed by workload.
func renderEnforcement(t *testing.T, bundle *check.Bundle) string {
	out := map[string][]products.ProxyEnforcement{}
	for _, o := range bundle.Objects {
		if w, ok := o.(*policy.Workload); ok {
			out[fmt.Sprintf("%s %s/%s", w.Kind, w.Namespace, w.Name)] = products.EnforcementAt(bundle.State, bundle.State.Settings(w.Namespace).Root, w)
		}
	}
	data, err := yaml.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
