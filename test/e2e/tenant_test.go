package e2e

import (
	"cmp"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshguard/meshguard/certs"
)

// The tenant-adversary suite: the attacks of meshguard's tenant audit, each replayed
// through the real kubectl as a namespace tenant (a ServiceAccount with write rights on
// its own namespace's Pods, Services, ConfigMaps and Istio and Gateway API kinds), against
// a namespace whose guardrail requires coverage and denies MG301, MG504, MG813 and MG601.
// Each attack ends with the step the audit got past; it must be refused.

// tenantRole is what a mesh tenant is given in its own namespace.
const tenantRole = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: meshguard-e2e-tenant}
rules:
- apiGroups: [""]
  resources: [pods, services, configmaps]
  verbs: ["*"]
- apiGroups: [security.istio.io, networking.istio.io, gateway.networking.k8s.io]
  resources: ["*"]
  verbs: ["*"]
---
apiVersion: meshguard.io/v1alpha1
kind: MeshGuardrail
metadata: {name: tenant-audit}
spec:
  namespaceSelector: {matchLabels: {tenant-audit: "true"}}
  enforcementAction: deny
  rules: {MG301: deny, MG504: deny, MG813: deny, MG601: deny, MG809: deny}
  coverage: {required: true, podLabels: {enablesecurity: "{namespace}"}, allowOptOut: false}
`

// tenantIdentity is the tenant, alice, and its rights in its namespace.
const tenantIdentity = `apiVersion: v1
kind: ServiceAccount
metadata: {name: alice}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: meshguard-e2e-tenant}
subjects: [{kind: ServiceAccount, name: alice, namespace: NS}]
`

// strictMTLS is a namespace's STRICT PeerAuthentication.
const strictMTLS = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict}
spec: {mtls: {mode: STRICT}}
`

// tenantWorkload is the tenant's protected workload: STRICT mTLS, and a token required by
// the policy selecting the coverage label (the ALLOW first: MG301 is at deny).
const tenantWorkload = `apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec: {containers: [{name: c, image: registry.example/web:1}]}
---
` + strictMTLS + `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt}
spec:
  selector: {matchLabels: {enablesecurity: NS}}
  action: ALLOW
  rules:
  - from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt}
spec:
  selector: {matchLabels: {enablesecurity: NS}}
  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [web]}]
`

// attack is a finding of the audit and the steps that replay it.
type attack struct {
	finding, name string
	steps         []attackStep
	// ambient: the namespace is ambient, with no workload to begin with.
	ambient bool
	// leaves is what coverage says of Pod web afterwards, where not protected.
	leaves string
}

// attackStep is one kubectl command of an attack: as the tenant unless by names another
// identity (admin for the cluster admin); want is "" where it must succeed, "any" where
// its outcome does not matter, else what its refusal must say.
type attackStep struct {
	by, want string
	args     []string
	stdin    string
	// stdout, where set, is what the command must print.
	stdout string
	// eventually: the step is retried until it gives what it must (meshguard's cache
	// catching up with the steps before).
	eventually bool
}

func tenant(want string, args ...string) attackStep { return attackStep{want: want, args: args} }

func tenantApplies(want, manifest string) attackStep {
	return attackStep{want: want, args: []string{"apply", "-f", "-"}, stdin: manifest}
}

// run runs the step in namespace ns.
func (s attackStep) run(t *testing.T, ns string) {
	t.Helper()
	// Within 45 s, as meshguard's audit reports a change (see TestAudit).
	deadline := time.Now().Add(45 * time.Second)
	for err := s.try(t, ns); err != nil; err = s.try(t, ns) {
		if !s.eventually || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// try runs the step once, and tells how it did not give what it must.
func (s attackStep) try(t *testing.T, ns string) error {
	args := append([]string{"-n", ns}, s.args...)
	switch s.by {
	case "":
		args = append(args, "--as=system:serviceaccount:"+ns+":alice")
	case "admin":
	default:
		args = append(args, "--as="+s.by)
	}
	stdout, stderr, err := kubectl(t, strings.ReplaceAll(s.stdin, "NS", ns), args...)
	switch {
	case s.want == "any":
	case s.want == "" && err != nil:
		return fmt.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	case s.want != "" && (err == nil || !strings.Contains(stderr, s.want)):
		return fmt.Errorf("kubectl %s: want refused with %q, got err=%v\n%s%s", strings.Join(args, " "), s.want, err, stdout, stderr)
	case s.stdout != "" && stdout != strings.ReplaceAll(s.stdout, "NS", ns):
		return fmt.Errorf("kubectl %s: printed %q, want %q", strings.Join(args, " "), stdout, s.stdout)
	}
	return nil
}

// tenantNamespace makes namespace ns governed by the tenant-audit guardrail (tenantRole
// applied), with the tenant in it. In an ambient namespace that is all; elsewhere it adds
// the tenant's protected workload, and waits until meshguard's cache shows it protected.
func tenantNamespace(t *testing.T, ns string, ambient bool) {
	t.Helper()
	labels, manifest := `tenant-audit: "true"`, tenantIdentity+"---\n"+tenantWorkload
	if ambient {
		labels, manifest = labels+", istio.io/dataplane-mode: ambient", tenantIdentity
	}
	namespace(t, ns, labels)
	if _, stderr, err := kubectl(t, strings.ReplaceAll(manifest, "NS", ns), "apply", "-n", ns, "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if ambient {
		// The namespace reached meshguard once new Pods get its coverage label.
		waitFor(t, func() bool {
			out, _, err := kubectl(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: probe}\nspec: {containers: [{name: c, image: c}]}\n",
				"-n", ns, "create", "--dry-run=server", "-f", "-", "-o", "jsonpath={.metadata.labels.enablesecurity}")
			return err == nil && out == ns
		})
		return
	}
	waitFor(t, func() bool {
		_, stderr, err := kubectl(t, "", "-n", ns, "delete", "authorizationpolicy", "require-jwt", "--dry-run=server", "--as=system:serviceaccount:"+ns+":alice")
		return err != nil && strings.Contains(stderr, "MG303")
	})
}

// coverageOf returns what `meshguard coverage --cluster` says of Pod web in ns.
func coverageOf(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command(local.Binary, "coverage", "--cluster", "--kubeconfig", local.Kubeconfig, "-n", ns, "-o", "json").Output()
	if err != nil {
		t.Fatalf("coverage: %v", err)
	}
	var report struct {
		Workloads []struct{ Kind, Name, Verdict string }
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("coverage: %v\n%s", err, out)
	}
	for _, w := range report.Workloads {
		if w.Kind == "Pod" && w.Name == "web" {
			return w.Verdict
		}
	}
	t.Fatalf("coverage does not list Pod web:\n%s", out)
	return ""
}

// padded is an AuthorizationPolicy rule's when conditions on two headers, 64 values each.
func padded(field string) string {
	var a, b []string
	for i := range 64 {
		a, b = append(a, fmt.Sprintf("a%d", i)), append(b, fmt.Sprintf("b%d", i))
	}
	quoted := func(vs []string) string { js, _ := json.Marshal(vs); return string(js) }
	return fmt.Sprintf(`[{"key":"request.headers[x-pad-a]","%s":%s},{"key":"request.headers[x-pad-b]","%s":%s}]`, field, quoted(a), field, quoted(b))
}

// allowFrom is an ALLOW policy of the protected workload admitting the callers of source.
func allowFrom(name, source string) string {
	return `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"` + name + `"},
"spec":{"selector":{"matchLabels":{"enablesecurity":"NS"}},"action":"ALLOW","rules":[{"from":[{"source":` + source + `}]}]}}`
}

const openGet = `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"open-get"},
"spec":{"selector":{"matchLabels":{"enablesecurity":"NS"}},"action":"ALLOW","rules":[{"to":[{"operation":{"methods":["GET"]}}]}]}}`

// ambientApp is a tenant's Service of an ambient namespace whose tokens its waypoint
// checks, and where ztunnel admits only the waypoint.
const ambientApp = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, labels: {istio.io/waypoint-for: service}}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, labels: {istio.io/use-waypoint: waypoint}}
spec: {selector: {app: api}, ports: [{port: 80, targetPort: 8080}]}
---
` + strictMTLS + `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-waypoint}
spec:
  selector: {matchLabels: {app: api}}
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/NS/sa/waypoint"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api-require-jwt}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  action: ALLOW
  rules: [{from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: api-jwt}
spec:
  targetRefs: [{kind: Service, group: "", name: api}]
  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys, audiences: [api]}]
`

func TestTenantAttacks(t *testing.T) {
	phantom := `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy",
"metadata":{"name":"phantom","namespace":"NS","resourceVersion":"1"},
"spec":{"selector":{"matchLabels":{"enablesecurity":"NS"}},"action":"ALLOW","rules":[{"from":[{"source":{"requestPrincipals":["https://idp.example.com/*"]}}]}]}}`
	second := allowFrom("require-jwt-2", `{"requestPrincipals":["https://idp.example.com/*"]}`)
	attacks := []attack{{
		finding: "F1", name: "a DENY padded past what the engine tries, then an ALLOW on GET",
		steps: []attackStep{
			tenantApplies("any", `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"block-scanners"},
"spec":{"selector":{"matchLabels":{"enablesecurity":"NS"}},"action":"DENY","rules":[{"when":`+padded("values")+`}]}}`),
			tenantApplies("MG303", openGet),
		},
	}, {
		finding: "F1", name: "an ALLOW on GET padded itself",
		steps: []attackStep{tenantApplies("MG303", `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"open-get"},
"spec":{"selector":{"matchLabels":{"enablesecurity":"NS"}},"action":"ALLOW","rules":[{"to":[{"operation":{"methods":["GET"]}}],"when":`+padded("notValues")+`}]}}`)},
	}, {
		finding: "F2", name: "a CREATE the API server refuses after admission (resourceVersion set), then the DELETE of the enforcing policy",
		steps: []attackStep{
			{want: "any", args: []string{"create", "--raw", "/apis/security.istio.io/v1/namespaces/NS/authorizationpolicies", "-f", "-"}, stdin: phantom},
			tenant("MG303", "delete", "authorizationpolicy", "require-jwt"),
		},
	}, {
		finding: "F2", name: "a CREATE over the namespace's quota, then the DELETE of the enforcing policy",
		steps: []attackStep{
			// At its limit: no quota controller runs here to count, so the admin writes the
			// status the controller would.
			{by: "admin", args: []string{"create", "quota", "policies", "--hard=count/authorizationpolicies.security.istio.io=1"}},
			{by: "admin", args: []string{"patch", "quota", "policies", "--subresource=status", "--type=merge", "-p",
				`{"status":{"hard":{"count/authorizationpolicies.security.istio.io":"1"},"used":{"count/authorizationpolicies.security.istio.io":"1"}}}`}},
			tenantApplies("exceeded quota", second),
			tenant("MG303", "delete", "authorizationpolicy", "require-jwt"),
		},
	}, {
		finding: "F4", name: "an ownerReference on the enforcing policy, then its DELETE by the garbage collector",
		steps: []attackStep{
			tenant("", "create", "configmap", "owner-anchor"),
			tenant("", "patch", "authorizationpolicy", "require-jwt", "--type=merge", "-p",
				`{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"gone","uid":"00000000-0000-0000-0000-000000000001"}]}}`),
			{by: "system:serviceaccount:kube-system:generic-garbage-collector", want: "MG303", args: []string{"delete", "authorizationpolicy", "require-jwt"}},
		},
	}, {
		finding: "F5", name: "a second enforcing policy held by a finalizer and deleted, then the first deleted",
		steps: []attackStep{
			tenantApplies("", second),
			tenant("", "patch", "authorizationpolicy", "require-jwt-2", "--type=merge", "-p", `{"metadata":{"finalizers":["example.com/hold"]}}`),
			tenant("", "delete", "authorizationpolicy", "require-jwt-2", "--wait=false"),
			tenant("", "label", "authorizationpolicy", "require-jwt-2", "touched=1"),
			tenant("MG303", "delete", "authorizationpolicy", "require-jwt", "--wait=false"),
			tenant("", "patch", "authorizationpolicy", "require-jwt-2", "--type=merge", "-p", `{"metadata":{"finalizers":null}}`),
		},
	}, {
		finding: "F6", name: "an ALLOW of principals cluster.local/*",
		steps: []attackStep{tenantApplies("MG303", allowFrom("allow-mesh", `{"principals":["cluster.local/*"]}`))},
	}, {
		finding: "F6", name: "an ALLOW of namespaces tenant-*",
		steps: []attackStep{tenantApplies("MG303", allowFrom("allow-tenants", `{"namespaces":["tenant-*"]}`))},
	}}
	if _, stderr, err := kubectl(t, tenantRole, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	sneaky := "apiVersion: v1\nkind: Pod\nmetadata: {name: sneaky, labels: {app: payments, istio: payments-gateway%s}}\nspec: {containers: [{name: c, image: registry.example/payments:1}]}\n"
	attacks = append(attacks, attack{finding: "F9", name: "a Pod labelled like a gateway, injection off", steps: []attackStep{
		tenantApplies("MG504", fmt.Sprintf(sneaky, `, sidecar.istio.io/inject: "false"`)),
	}}, attack{finding: "F9", name: "a Pod labelled like a gateway gets the coverage label", steps: []attackStep{
		tenantApplies("", fmt.Sprintf(sneaky, "")),
		{args: []string{"get", "pod", "sneaky", "-o", "jsonpath={.metadata.labels.enablesecurity}"}, stdout: "NS"},
	}})
	// An ambient Service whose JWT policies its waypoint enforces; the control, its
	// binding removed, is MG812 once meshguard's cache shows it all.
	waypointed := []attackStep{
		{by: "admin", args: []string{"apply", "-f", "-"}, stdin: "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: istio-waypoint}\nspec: {controllerName: istio.io/mesh-controller}\n"},
		tenantApplies("", ambientApp),
		{args: []string{"label", "service", "api", "istio.io/use-waypoint=none", "--overwrite", "--dry-run=server"}, want: "MG812", eventually: true},
	}
	attacks = append(attacks, attack{finding: "F8", name: "the waypoint made to serve workloads only", ambient: true, steps: slices.Concat(waypointed, []attackStep{
		tenant("MG812", "label", "gateway", "waypoint", "istio.io/waypoint-for=workload", "--overwrite"),
	})}, attack{finding: "F8", name: "the waypoint made of another class", ambient: true, steps: slices.Concat(waypointed, []attackStep{
		tenant("MG812", "patch", "gateway", "waypoint", "--type=merge", "-p", `{"spec":{"gatewayClassName":"other"}}`),
	})}, attack{finding: "F8", name: "the Service deleted, and created again without its binding", ambient: true, steps: slices.Concat(waypointed, []attackStep{
		tenant("", "delete", "service", "api"),
		tenantApplies("MG812", "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {selector: {app: api}, ports: [{port: 80, targetPort: 8080}]}\n"),
	})})
	attacks = append(attacks, attack{finding: "F15", name: "the policy admitting only the waypoint at ztunnel deleted", ambient: true, steps: slices.Concat(waypointed, []attackStep{
		tenant("MG808", "delete", "authorizationpolicy", "only-waypoint"),
	})}, attack{finding: "F15", name: "an ingress route to the Service created after its RequestAuthentication", ambient: true, steps: slices.Concat(waypointed, []attackStep{
		{by: "admin", args: []string{"apply", "-f", "-"}, stdin: "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: istio}\nspec: {controllerName: istio.io/gateway-controller}\n"},
		tenantApplies("", "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: public}\nspec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}\n"),
		{want: "MG809", eventually: true, args: []string{"apply", "-f", "-", "--dry-run=server"}, stdin: "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: api-public}\nspec: {parentRefs: [{name: public}], rules: [{backendRefs: [{name: api, port: 80}]}]}\n"},
	})})
	var paths []string
	for i := range 2000 {
		paths = append(paths, fmt.Sprintf("/p/%06d/xxxxxxxx", i))
	}
	big, _ := json.Marshal(paths)
	attacks = append(attacks, attack{finding: "F10", name: "a policy of thousands of values, to slow every review of the namespace", steps: []attackStep{
		tenantApplies("MG209", `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"big-000"},
"spec":{"selector":{"matchLabels":{"app":"nothing-here"}},"action":"ALLOW","rules":[{"to":[{"operation":{"paths":`+string(big)+`}}]}]}}`),
	}})
	report := []string{"get", "reports.openreports.io", "meshguard-authorizationpolicy-selects-nothing", "-o", "jsonpath={.summary.warn}"}
	attacks = append(attacks, attack{finding: "F16", name: "meshguard's report emptied by the tenant", steps: []attackStep{
		{by: "admin", args: []string{"create", "role", "reports-admin", "--verb=get,list,watch,update,patch,delete,create", "--resource=reports.openreports.io"}},
		{by: "admin", args: []string{"create", "rolebinding", "alice-reports", "--role=reports-admin", "--serviceaccount=NS:alice"}},
		tenantApplies("", `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"selects-nothing"},
"spec":{"selector":{"matchLabels":{"app":"nothing-here"}},"action":"DENY","rules":[{"to":[{"operation":{"paths":["/admin"]}}]}]}}`),
		{args: report, stdout: "2", eventually: true}, // MG207 and MG403
		tenant("", "patch", "reports.openreports.io", "meshguard-authorizationpolicy-selects-nothing", "--type=merge", "-p", `{"results":null,"summary":{"warn":0,"pass":1}}`),
		{args: report, stdout: ""},
		// The namespace's next pass (a change there) writes it again.
		tenant("", "label", "authorizationpolicy", "selects-nothing", "touched=1"),
		{args: report, stdout: "2", eventually: true},
	}})
	attacks = append(attacks, attack{finding: "F18", name: "a dry run of the DELETE of every policy, which the real one would refuse", steps: []attackStep{
		tenantApplies("", second),
		{want: "MG303", eventually: true, args: []string{"delete", "--raw", "/apis/security.istio.io/v1/namespaces/NS/authorizationpolicies?dryRun=All"}},
		{args: []string{"get", "authorizationpolicies", "-o", "name"}, stdout: "authorizationpolicy.security.istio.io/require-jwt\nauthorizationpolicy.security.istio.io/require-jwt-2\n"},
	}})
	attacks = append(attacks, attack{finding: "F12", name: "the RequestAuthentication deleted, then the policy that demanded a token", leaves: "locked", steps: []attackStep{
		tenant("", "delete", "requestauthentication", "web-jwt"),
		tenant("MG303", "delete", "authorizationpolicy", "require-jwt"),
	}})
	denyTenantB := tenantApplies("", `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"deny-tenant-b"},
"spec":{"selector":{"matchLabels":{"enablesecurity":"NS"}},"action":"DENY","rules":[{"from":[{"source":{"namespaces":["tenant-b"]}}]}]}}`)
	workloadPA := func(spec string) string {
		return `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"web"},"spec":{"selector":{"matchLabels":{"app":"web"}},` + spec + `}}`
	}
	attacks = append(attacks,
		// PERMISSIVE, not a DELETE: the suite's mesh may be STRICT (a seed's root policy),
		// under which the namespace's DELETE leaves it STRICT (TestPeerAuthenticationWeakened
		// judges the DELETE).
		attack{finding: "F13", name: "the namespace's STRICT PeerAuthentication made PERMISSIVE under a DENY on namespaces", steps: []attackStep{
			denyTenantB,
			{want: "MG307", eventually: true, args: []string{"patch", "peerauthentication", "strict", "--type=merge", "-p", `{"spec":{"mtls":{"mode":"PERMISSIVE"}}}`, "--dry-run=server"}},
			tenant("MG307", "patch", "peerauthentication", "strict", "--type=merge", "-p", `{"spec":{"mtls":{"mode":"PERMISSIVE"}}}`),
		}},
		attack{finding: "F13", name: "a workload-level PERMISSIVE PeerAuthentication", steps: []attackStep{
			tenantApplies("MG601", workloadPA(`"mtls":{"mode":"PERMISSIVE"}`)),
		}},
		attack{finding: "F13", name: "a port DISABLE under a workload-level STRICT", steps: []attackStep{
			tenantApplies("MG601", workloadPA(`"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"DISABLE"}}`)),
		}})
	for _, optOut := range []string{`labels: {app: payments, sidecar.istio.io/inject: "False"}`, `labels: {app: payments}, annotations: {sidecar.istio.io/interceptionMode: NONE}`,
		`labels: {app: payments}, annotations: {traffic.sidecar.istio.io/includeInboundPorts: ""}`} {
		attacks = append(attacks, attack{finding: "F14", name: "a Pod switching interception off: " + optOut, steps: []attackStep{
			tenantApplies("MG504", "apiVersion: v1\nkind: Pod\nmetadata: {name: payments, "+optOut+"}\nspec: {containers: [{name: c, image: registry.example/payments:1}]}\n"),
		}})
	}
	attacks = append(attacks, attack{finding: "F7", name: "an ambient Pod created out of the mesh", ambient: true, steps: []attackStep{
		tenantApplies("MG813", "apiVersion: v1\nkind: Pod\nmetadata: {name: api, labels: {app: api, istio.io/dataplane-mode: none}}\nspec: {containers: [{name: c, image: registry.example/api:1}]}\n"),
	}}, attack{finding: "F7", name: "an ambient Pod relabelled out of the mesh", ambient: true, steps: []attackStep{
		tenantApplies("", "apiVersion: v1\nkind: Pod\nmetadata: {name: api, labels: {app: api}}\nspec: {containers: [{name: c, image: registry.example/api:1}]}\n"),
		tenant("MG813", "label", "pod", "api", "istio.io/dataplane-mode=none"),
	}})
	for i, a := range attacks {
		t.Run(a.finding+" "+a.name, func(t *testing.T) {
			t.Parallel()
			ns := fmt.Sprintf("tenant-%s-%d", strings.ToLower(a.finding), i)
			tenantNamespace(t, ns, a.ambient)
			for _, s := range a.steps {
				s.args = append([]string(nil), s.args...)
				for j := range s.args {
					s.args[j] = strings.ReplaceAll(s.args[j], "NS", ns)
				}
				s.run(t, ns)
			}
			if a.ambient {
				return
			}
			if verdict, want := coverageOf(t, ns), cmp.Or(a.leaves, "protected"); verdict != want {
				t.Errorf("coverage says Pod web is %s, want %s", verdict, want)
			}
		})
	}
}

// TestReviewsFromTheAPIServerOnly: a Pod that reaches meshguard's port cannot post reviews
// (the tenant audit's F3: a forged CREATE planted a pending write in another tenant's
// namespace). Only a client presenting the API server's certificate is answered.
func TestReviewsFromTheAPIServerOnly(t *testing.T) {
	const forged = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-forged",
"kind":{"group":"security.istio.io","version":"v1","kind":"AuthorizationPolicy"},"resource":{"group":"security.istio.io","version":"v1","resource":"authorizationpolicies"},
"name":"ghost","namespace":"tenant-b","operation":"CREATE","userInfo":{"username":"anyone"},"dryRun":true,
"object":{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"ghost","namespace":"tenant-b"},"spec":{}}}}`
	other, err := certs.SelfSignedClient("kube-apiserver", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherCert, err := tls.X509KeyPair(other.Cert, other.Key)
	if err != nil {
		t.Fatal(err)
	}
	apiServer := apiServerTLS(t)
	for _, c := range []struct {
		name   string
		client []tls.Certificate
		ok     bool
	}{
		{"no client certificate", nil, false},
		{"a client certificate of another CA", []tls.Certificate{otherCert}, false},
		{"the API server's", apiServer.Certificates, true},
	} {
		config := apiServer.Clone()
		config.Certificates = c.client
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: config}, Timeout: 5 * time.Second}
		resp, err := client.Post(local.WebhookURL+"/validate", "application/json", strings.NewReader(forged))
		if err == nil {
			resp.Body.Close()
		}
		if ok := err == nil && resp.StatusCode == http.StatusOK; ok != c.ok {
			t.Errorf("%s: answered %v (error %v)", c.name, ok, err)
		}
		client.CloseIdleConnections()
	}
}
