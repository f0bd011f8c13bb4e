package policy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshguard/meshguard/check"
	"github.com/meshguard/meshguard/policy"
)

// TestEnforcementGolden pins, in the style of istiod's builder testdata, what each proxy
// enforces for every workload of a bundle (testdata/proxies/NAME.yaml): the sidecar,
// ztunnel, waypoint or gateway, with each rule as it receives it or why it receives none.
// The expected text is NAME.golden; `go test ./policy -run TestEnforcementGolden
// -update` writes it, to be reviewed as a diff.
func TestEnforcementGolden(t *testing.T) {
	bundles, err := filepath.Glob(filepath.Join("testdata", "proxies", "*.yaml"))
	if err != nil || len(bundles) == 0 {
		t.Fatalf("no bundles in testdata/proxies: %v", err)
	}
	for _, file := range bundles {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			bundle, err := (&check.Loader{Namespace: "default", Engine: policy.NewEngine()}).Load(file)
			if err != nil {
				t.Fatal(err)
			}
			got := renderEnforcement(bundle)
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
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

func renderEnforcement(bundle *check.Bundle) string {
	var b strings.Builder
	for _, o := range bundle.Objects {
		w, ok := o.(*policy.Workload)
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "%s %s/%s\n", w.Kind, w.Namespace, w.Name)
		proxies := policy.EnforcementAt(bundle.State, bundle.State.Settings(w.Namespace).Root, w)
		if len(proxies) == 0 {
			b.WriteString("  no proxy intercepts its inbound traffic\n")
		}
		for _, p := range proxies {
			fmt.Fprintf(&b, "  %s (routes: %s)\n    callers: %s\n", p.Proxy, strings.Join(p.Routes, ", "), p.MTLS)
			if len(p.RequestAuthentications) > 0 {
				fmt.Fprintf(&b, "    validates tokens: %s\n", strings.Join(p.RequestAuthentications, ", "))
			}
			for _, r := range p.Rules {
				dryRun := ""
				if r.DryRun {
					dryRun = " (dry run)"
				}
				what := r.Matches
				if r.Skipped != "" {
					what = "not enforced: " + r.Skipped
				}
				fmt.Fprintf(&b, "    %s %s%s rule %d: %s\n", r.Action, r.Policy, dryRun, r.Rule, what)
			}
		}
	}
	return b.String()
}
