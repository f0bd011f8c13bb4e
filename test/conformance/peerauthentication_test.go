package conformance

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/security/authn"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/config/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/products"
)

// TestPeerAuthenticationConformance: for PeerAuthentications generated from a seed (mesh,
// namespace and workload levels, UNSET modes, several of a level, ports), a caller without
// mTLS reaches the workload's sidecar on a port exactly where the mode istiod composes for
// that port (authn.ComposePeerAuthentication) is not STRICT; a caller with mTLS always.
func TestPeerAuthenticationConformance(t *testing.T) {
	modes := []securityv1beta1.PeerAuthentication_MutualTLS_Mode{
		securityv1beta1.PeerAuthentication_MutualTLS_UNSET, securityv1beta1.PeerAuthentication_MutualTLS_DISABLE,
		securityv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE, securityv1beta1.PeerAuthentication_MutualTLS_STRICT,
	}
	ports := []uint32{8080, 9090, 80}
	cases, divergences := 0, 0
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for s := range uint64(*seeds) {
		r := rand.New(rand.NewPCG(*seed0+s, 1))
		var configs []*config.Config
		st, w := meshguardState(nil, false)
		for i := range r.IntN(4) {
			spec := &securityv1beta1.PeerAuthentication{Mtls: &securityv1beta1.PeerAuthentication_MutualTLS{Mode: modes[r.IntN(len(modes))]}}
			ns := pick(r, []string{"shop", "shop", rootNamespace, "other"})
			if r.IntN(2) == 0 {
				spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": pick(r, []string{"web", "web", "api"})}}
				for range r.IntN(3) {
					if spec.PortLevelMtls == nil {
						spec.PortLevelMtls = map[uint32]*securityv1beta1.PeerAuthentication_MutualTLS{}
					}
					spec.PortLevelMtls[ports[r.IntN(2)]] = &securityv1beta1.PeerAuthentication_MutualTLS{Mode: modes[r.IntN(len(modes))]}
				}
			}
			created := epoch.Add(time.Duration(i) * time.Hour) // in the order added: oldest first
			cfg := &config.Config{Meta: config.Meta{GroupVersionKind: gvk.PeerAuthentication, Name: fmt.Sprintf("pa%d", i), Namespace: ns, CreationTimestamp: created}, Spec: spec}
			if _, err := validation.ValidatePeerAuthentication(*cfg); err != nil {
				continue // istiod's webhook refuses it
			}
			if (ns == "shop" || ns == rootNamespace) && (spec.Selector == nil || spec.Selector.MatchLabels["app"] == workload["app"]) {
				configs = append(configs, cfg)
			}
			pa := &policy.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: cfg.Name, Namespace: ns, CreationTimestamp: metav1.NewTime(created)}}
			proto.Merge(&pa.Spec, spec)
			st.Add(pa)
		}
		merged := authn.ComposePeerAuthentication(rootNamespace, configs)
		for _, port := range ports {
			mode := merged.Mode
			if m, ok := merged.PerPort[port]; ok {
				mode = m
			}
			for _, principal := range []string{"", "cluster.local/ns/other/sa/client"} {
				cases++
				want := principal != "" || mode != model.MTLSStrict
				e, err := products.Explain(st, rootNamespace, w, products.ViaDirect, products.Request{Method: "GET", Path: "/", Port: fmt.Sprint(port), FromPrincipal: principal})
				if err != nil {
					t.Fatal(err)
				}
				if got := e.Verdict == policy.VerdictAllow; got != want {
					divergences++
					if divergences <= 10 {
						t.Errorf("seed %d: port %d from %q: istiod's mode %v, meshguard says %s (%s)", *seed0+s, port, principal, mode, e.Verdict, e.DecidedBy)
					}
				}
			}
		}
	}
	tally.cases, tally.divergences = tally.cases+cases, tally.divergences+divergences
}
