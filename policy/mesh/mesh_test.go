package mesh_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/mesh/meshtest"
)

// TestSnapshotSelection: selection through the label index gives exactly the workloads,
// in order, that a scan of every workload gives.
func TestSnapshotSelection(t *testing.T) {
	s := mesh.NewSnapshot()
	values := []string{"a", "b", "c"}
	for i := range 60 {
		labels := map[string]string{"app": values[i%3], "tier": values[i/3%3]}
		if i%4 == 0 {
			labels["canary"] = "true"
		}
		s.Add(meshtest.Pod([]string{"shop", "dev"}[i%2], fmt.Sprintf("p-%d", i), labels))
	}
	scan := func(ns string, sel map[string]string) []*mesh.Workload {
		var out []*mesh.Workload
		for _, n := range mesh.SortedKeys(s.Pods) {
			for _, w := range s.Pods[n] {
				if (ns == "" || n == ns) && mesh.Selects(sel, w.Labels) {
					out = append(out, w)
				}
			}
		}
		return out
	}
	for _, sel := range []map[string]string{nil, {"app": "a"}, {"app": "b", "tier": "c"}, {"canary": "true", "app": "c"}, {"app": "z"}, {"missing": "a"}} {
		for _, ns := range []string{"shop", "dev", "", "none"} {
			if got, want := s.Workloads(ns, sel), scan(ns, sel); !slices.Equal(got, want) {
				t.Errorf("Workloads(%q, %v): %d workloads, want %d", ns, sel, len(got), len(want))
			}
		}
	}
}

// TestProxyContainer: Istio's proxy container is named istio-proxy and runs the proxyv2
// image of any registry, tag or flavour, or "auto" for the injector to fill in.
func TestProxyContainer(t *testing.T) {
	for _, c := range []struct {
		name, image string
		want        bool
	}{
		{"istio-proxy", "docker.io/istio/proxyv2:1.28.5", true},
		{"istio-proxy", "gcr.io/istio-release/proxyv2:1.28.5-distroless", true},
		{"istio-proxy", "registry.example:5000/mirror/proxyv2@sha256:0123", true},
		{"istio-proxy", "auto", true},
		{"istio-proxy", "registry.example/payments:1", false},
		{"istio-proxy", "registry.example/proxyv2-lookalike:1", false},
		{"c", "docker.io/istio/proxyv2:1.28.5", false},
	} {
		if got := mesh.IsProxyContainer(c.name, c.image); got != c.want {
			t.Errorf("%s %s: %v", c.name, c.image, got)
		}
	}
}
