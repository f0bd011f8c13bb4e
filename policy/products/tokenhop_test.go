package products_test

import (
	"hash/maphash"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/check"
	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
)

// TestProtectionIsTheTokenHop holds what the rules judge a workload by to the routes
// explain and coverage walk: its protection is the policies of the proxy that validates
// its tokens on its routes, the waypoint hop in ambient mode (none without a waypoint),
// else the sidecar's or gateway's hop of its direct route. A Pod nothing intercepts has no
// hop; its protection is what its proxy would load (MG504 and MG813 report it). Over every
// workload of the rules' fixtures and the per-proxy bundles.
func TestProtectionIsTheTokenHop(t *testing.T) {
	var files []string
	for _, pattern := range []string{"../testdata/*.yaml", "testdata/proxies/*.yaml"} {
		found, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, slices.DeleteFunc(found, func(f string) bool { return strings.HasSuffix(f, ".golden.yaml") })...)
	}
	seen, loaded := map[string]int{}, 0
	for _, file := range files {
		bundle, err := (&check.Loader{Namespace: "default", Engine: policy.NewEngine()}).Load(file)
		if err != nil {
			// A rule's fixture may hold an object before and after a change: no one state.
			if strings.Contains(err.Error(), "the last applied would replace the other") {
				continue
			}
			t.Fatalf("%s: %v", file, err)
		}
		loaded++
		st := bundle.State
		for _, o := range bundle.Objects {
			w, ok := o.(*policy.Workload)
			if !ok {
				continue
			}
			root := st.Settings(w.Namespace).Root
			got := dataplane.NewMemo(st, root, maphash.MakeSeed()).Protection(w)
			routes := dataplane.RoutesTo(st, root, w, nil)
			var hop *dataplane.Hop
			switch {
			case mesh.InAmbient(st, w):
				if i := slices.IndexFunc(routes, func(r dataplane.Route) bool { return strings.HasPrefix(r.Via, "waypoint ") }); i >= 0 {
					hop, seen["waypoint"] = &routes[i].Hops[0], seen["waypoint"]+1
				} else {
					hop, seen["ambient, no waypoint"] = &dataplane.Hop{}, seen["ambient, no waypoint"]+1
				}
				if !got.ViaWaypoint() {
					t.Errorf("%s: %s/%s is in ambient mode, and its protection is not its waypoint's", file, w.Namespace, w.Name)
				}
			case len(routes[0].Hops) == 0:
				seen["not intercepted"]++
				continue
			default:
				hop = &routes[0].Hops[0]
				seen[hop.Proxy]++
			}
			if names(got.RAs) != names(hop.RAs) || names(got.APs) != names(hop.APs) {
				t.Errorf("%s: %s/%s is protected by RAs [%s], APs [%s]; its token-checking hop (%s) loads RAs [%s], APs [%s]",
					file, w.Namespace, w.Name, names(got.RAs), names(got.APs), hop.Proxy, names(hop.RAs), names(hop.APs))
			}
		}
	}
	for _, kind := range []string{"sidecar", "gateway", "waypoint", "ambient, no waypoint", "not intercepted"} {
		if seen[kind] == 0 {
			t.Errorf("no workload of the fixtures is checked at %q: the test no longer covers it", kind)
		}
	}
	if loaded < len(files)*3/4 {
		t.Errorf("only %d of %d files load as one state", loaded, len(files))
	}
	t.Logf("%d files; workloads by their token-checking proxy: %v", loaded, seen)
}

// names lists objects by namespace/name, in order.
func names[T metav1.Object](objects []T) string {
	out := make([]string, len(objects))
	for i, o := range objects {
		out[i] = o.GetNamespace() + "/" + o.GetName()
	}
	return strings.Join(out, ", ")
}
