package policy

import (
	"fmt"
	"slices"
	"strings"

	typev1beta1 "istio.io/api/type/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// ambientRules judge policies by the proxy that enforces them in Istio's ambient data plane:
// ztunnel takes what selector, namespace and root policies say, at L4 only; waypoints take
// only what targetRefs attach to them.
func ambientRules() []Rule {
	return []Rule{{
		ID: "MG801", Name: "ambient-ra-not-enforced", Default: Deny, Kinds: []string{KindRequestAuthentication},
		Summary: "A RequestAuthentication without `targetRefs` whose workloads include ambient Pods.",
		Why:     "ztunnel validates no tokens and waypoints ignore selector policies: tokens are never checked, and an AuthorizationPolicy on them has nothing to match.",
		Check: judge(func(c *Context, ra *RequestAuthentication) []Finding {
			ambient := c.ztunnelWorkloads(ra)
			if len(ambient) == 0 {
				return nil
			}
			return []Finding{finding(field.NewPath("spec", "selector"),
				fmt.Sprintf("%s run in ambient mode, where no proxy loads this RequestAuthentication: ztunnel validates no tokens, and waypoints take only policies attached by targetRefs", c.describe(ambient)),
				"bind the workloads' Service to a waypoint (istio.io/use-waypoint) and attach the RequestAuthentication to it: targetRefs: [{kind: Service, group: \"\", name: <service>}]")}
		}),
	}, {
		ID: "MG802", Name: "ambient-ztunnel-deny-noop", Default: Deny, Kinds: []string{KindAuthorizationPolicy},
		Summary: "A DENY policy without `targetRefs`, on ambient Pods, with a rule that has a clause (`from`, `to`, or one `when`) made only of HTTP-level fields.",
		Why:     "ztunnel receives that clause empty and skips it: the rule never fires, and what it should deny gets through (istio#61126).",
		Check: eachAPRule(denyOnly, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			clause := dataplane.ZtunnelNoOpClause(r, at)
			ambient := c.ztunnelWorkloads(p)
			if clause == nil || len(ambient) == 0 {
				return nil
			}
			return []Finding{finding(clause,
				fmt.Sprintf("%s run in ambient mode: ztunnel enforces L4 only, gets this clause empty and skips the rule, so it never denies anything", c.describe(ambient)),
				"attach the policy to the workloads' waypoint with targetRefs (kind: Service), where HTTP fields are enforced; keep only L4 fields (principals, namespaces, ipBlocks, ports) in policies for ztunnel")}
		}),
	}, {
		ID: "MG803", Name: "ambient-ztunnel-allow-l7-dropped", Default: Warn, Kinds: []string{KindAuthorizationPolicy},
		Summary: "An ALLOW policy without `targetRefs`, on ambient Pods, with a rule holding any HTTP-level field. Deny in the root namespace.",
		Why:     "istiod drops the whole rule for ztunnel; with no rule left the ALLOW admits nothing, and every connection is denied, from waypoints and gateways too.",
		Check: judge(func(c *Context, p *AuthorizationPolicy) []Finding {
			if !dataplane.IsAllow(p) || dataplane.IsDryRun(p) {
				return nil
			}
			ambient := c.ztunnelWorkloads(p)
			if len(ambient) == 0 {
				return nil
			}
			effect := "the other rules still admit what they match"
			if !slices.ContainsFunc(p.Spec.Rules, func(r *apRule) bool { return !rulefields.HTTPLevel(r) }) {
				effect = "no rule is left, so every connection to them is denied"
			}
			var out []Finding
			for i, r := range p.Spec.Rules {
				if !rulefields.HTTPLevel(r) {
					continue
				}
				f := finding(field.NewPath("spec", "rules").Index(i),
					fmt.Sprintf("%s run in ambient mode: ztunnel enforces L4 only and drops this rule; %s", c.describe(ambient), effect),
					"attach HTTP rules to the workloads' waypoint with targetRefs (kind: Service); keep only L4 fields in policies for ztunnel")
				if p.Namespace == c.Settings.Root {
					f = f.as(Deny)
				}
				out = append(out, f)
			}
			return out
		}),
	}, {
		ID: "MG804", Name: "ambient-ztunnel-deny-widened", Default: Warn, Kinds: []string{KindAuthorizationPolicy},
		Summary: "A DENY policy without `targetRefs`, on ambient Pods, whose entries mix L4 and HTTP-level fields (and that MG802 does not report).",
		Why:     "ztunnel keeps the L4 part alone: the DENY turns away more than meant (all of a port, all of a namespace's callers).",
		Check: eachAPRule(denyOnly, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			entry := mixedEntry(r, at)
			if entry == nil || dataplane.ZtunnelNoOpClause(r, at) != nil {
				return nil
			}
			ambient := c.ztunnelWorkloads(p)
			if len(ambient) == 0 {
				return nil
			}
			return []Finding{finding(entry,
				fmt.Sprintf("%s run in ambient mode: ztunnel drops the HTTP fields of this entry and denies on its L4 fields alone, more than meant", c.describe(ambient)),
				"attach the policy to the workloads' waypoint with targetRefs (kind: Service), or split it: L4 fields for ztunnel, HTTP fields at the waypoint")}
		}),
	}, {
		ID: "MG805", Name: "ambient-ztunnel-action-unsupported", Default: Deny, Kinds: []string{KindAuthorizationPolicy},
		Summary: "A CUSTOM (deny) or AUDIT (warn) policy without `targetRefs` on ambient Pods.",
		Why:     "istiod does not send CUSTOM or AUDIT policies to ztunnel: the external authorization is never asked, the audit never logged.",
		Check: judge(func(c *Context, p *AuthorizationPolicy) []Finding {
			custom := p.Spec.Action == apActionCustom
			if !custom && p.Spec.Action != apActionAudit {
				return nil
			}
			ambient := c.ztunnelWorkloads(p)
			if len(ambient) == 0 {
				return nil
			}
			f := finding(field.NewPath("spec", "action"),
				fmt.Sprintf("%s run in ambient mode, and ztunnel is never sent a %s policy: it is not enforced", c.describe(ambient), p.Spec.Action),
				"attach the policy to the workloads' waypoint with targetRefs (kind: Service)")
			if !custom {
				f = f.as(Warn)
			}
			return []Finding{f}
		}),
	}, {
		ID: "MG806", Name: "targetref-service-no-waypoint", Default: Deny, Kinds: []string{KindRequestAuthentication, KindAuthorizationPolicy},
		Summary: "`targetRefs` to a Service or ServiceEntry that resolves to no working waypoint: no `istio.io/use-waypoint` on it or its Namespace, `none`, the Gateway missing or not of class `istio-waypoint`, `istio.io/waypoint-for` not `service` or `all`, `allowedRoutes` refusing the Service's namespace, or a headless Service.",
		Why:     "A policy attached to a Service is enforced by its waypoint only: with none, it is enforced nowhere.",
		Check: func(c *Context) []Finding {
			s := mesh.ScopeOf(c.Object)
			var out []Finding
			for i, r := range s.TargetRefs {
				t, known := targetOf(c.State, s.Namespace, r.Kind, r.Name)
				if !known {
					continue // MG407: no such Service
				}
				if _, why := mesh.ServiceWaypoint(c.State, t); why != "" {
					out = append(out, finding(field.NewPath("spec", "targetRefs").Index(i),
						why+": this policy is enforced nowhere",
						"bind the Service to a waypoint: label it, or its namespace, istio.io/use-waypoint: <waypoint>, with a Gateway of class istio-waypoint serving Services"))
				}
			}
			return out
		},
	}, {
		ID: "MG807", Name: "targetref-attaches-nowhere", Default: Deny, Kinds: []string{KindRequestAuthentication, KindAuthorizationPolicy},
		Summary: "A JWT policy's `targetRefs` to a Gateway that does not exist, to a GatewayClass other than `istio-waypoint` or outside the root namespace, or to a kind Istio does not attach to.",
		Why:     "Istio ignores the reference: the policy is enforced nowhere, and the tokens it was meant to require are never asked for.",
		Check: func(c *Context) []Finding {
			if !isJWTPolicy(c.Object) {
				return nil
			}
			s := mesh.ScopeOf(c.Object)
			var out []Finding
			fix := "target an existing Gateway or waypoint, a Service bound to a waypoint, or GatewayClass istio-waypoint from the root namespace"
			for i, r := range s.TargetRefs {
				path := field.NewPath("spec", "targetRefs").Index(i)
				switch {
				case !slices.Contains(mesh.AttachableKinds, r.Kind):
					out = append(out, finding(path.Child("kind"),
						fmt.Sprintf("Istio attaches policies only to Gateway, GatewayClass, Service and ServiceEntry, not %q: this policy is enforced nowhere", r.Kind), fix))
				case r.Kind == "Gateway" && c.State.KnowsGateways() && !slices.ContainsFunc(c.State.Gateways(s.Namespace), func(g *Gateway) bool { return g.Name == r.Name }):
					out = append(out, finding(path.Child("name"),
						fmt.Sprintf("no Gateway %q in namespace %s: this policy is enforced nowhere", r.Name, s.Namespace), fix))
				case r.Kind == KindGatewayClass && r.Name != mesh.WaypointClass:
					out = append(out, finding(path.Child("name"),
						fmt.Sprintf("Istio attaches policies to GatewayClass %s only, not %q: this policy is enforced nowhere", mesh.WaypointClass, r.Name), fix))
				case r.Kind == KindGatewayClass && s.Namespace != c.Settings.Root:
					out = append(out, finding(path,
						fmt.Sprintf("a GatewayClass is attached to only from the root namespace %s, not %s: this policy is enforced nowhere", c.Settings.Root, s.Namespace), fix))
				}
			}
			return out
		},
	}, {
		ID: "MG808", Name: "waypoint-bypass", Default: Warn, Kinds: []string{KindRequestAuthentication, KindAuthorizationPolicy}, OnDelete: true,
		Summary: "A RequestAuthentication enforced only at a Service's waypoint (serving Services), attached to the Service or to the waypoint Gateway, while ztunnel lets other callers reach the Pods directly: no policy without targetRefs admits only the waypoint's identity. Deny where coverage is required. Also an AuthorizationPolicy change (its DELETE too) after which ztunnel lets them.",
		Why:     "Callers by Pod address, sidecar callers and plaintext callers skip the waypoint, and with it the token check.",
		Check:   reJudgedOnChanges(waypointBypass),
	}, {
		ID: "MG809", Name: "ingress-skips-waypoint", Default: Warn, Kinds: []string{KindRequestAuthentication, KindHTTPRoute, KindService, KindNamespace},
		Summary: "A RequestAuthentication enforced at a Service's waypoint, where an ingress gateway's HTTPRoute sends requests to the Service without `istio.io/ingress-use-waypoint: \"true\"` on the Service or its Namespace; also the HTTPRoute's CREATE or UPDATE, or the label's removal, that makes it so.",
		Why:     "Ingress traffic goes straight to the Pods, past the waypoint and its token check.",
		Check:   reJudgedOnChanges(ingressSkipsWaypoint),
	}, {
		ID: "MG810", Name: "ztunnel-sees-waypoint-identity", Default: Deny, Kinds: []string{KindAuthorizationPolicy},
		Summary: "A policy without `targetRefs` on `principals`, `namespaces` or `serviceAccounts` of clients, for ambient workloads whose traffic arrives through a waypoint. Deny for a DENY, warn for an ALLOW.",
		Why:     "ztunnel sees the waypoint's identity, not the client's: a DENY on a client is evaded, an ALLOW of a client locks it out.",
		Check: eachAPRule(allowOrDeny, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			var gw *Gateway
			for _, w := range c.ztunnelWorkloads(p) {
				if gw, _ = mesh.WaypointOf(c.State, w); gw != nil {
					break
				}
				// The namespace's label binds every Service of it, those the input lacks too.
				if !slices.ContainsFunc(c.State.Services(w.Namespace), func(svc *corev1.Service) bool { return Selects(svc.Spec.Selector, w.Labels) }) {
					if gw = mesh.NamespaceWaypoint(c.State, w.Namespace); gw != nil {
						break
					}
				}
			}
			if gw == nil {
				return nil
			}
			effect, action := "this DENY never sees the clients it names, and they get through", Deny
			if dataplane.IsAllow(p) {
				effect, action = "this ALLOW never sees the clients it names, and locks them out", Warn
			}
			var out []Finding
			for _, m := range mtlsMatcher.positive(r, at) {
				if slices.ContainsFunc(m.values, func(v string) bool {
					return dataplane.ValueMatches(rulefields.PeerPrincipal, mesh.WaypointIdentity(gw), v) || dataplane.ValueMatches(rulefields.Namespace, gw.Namespace, v)
				}) {
					continue // names the waypoint itself
				}
				out = append(out, finding(m.field(),
					fmt.Sprintf("traffic reaches these workloads through waypoint %s/%s, so ztunnel sees the waypoint's identity: %s", gw.Namespace, gw.Name, effect),
					"attach the policy to the Service's waypoint with targetRefs (kind: Service), where the client's identity is seen").as(action))
			}
			return out
		}),
	}, {
		ID: "MG811", Name: "selector-ignored-by-waypoint", Default: Deny, Kinds: []string{KindRequestAuthentication, KindAuthorizationPolicy},
		Summary: "A selector on waypoint Pods, or on the label `istio.io/gateway-name` (removed in Istio 1.24).",
		Why:     "Waypoints take only policies attached by targetRefs, and gateways created since 1.24 lack the old label: the policy reaches none of them.",
		Check: func(c *Context) []Finding {
			s := mesh.ScopeOf(c.Object)
			if len(s.TargetRefs) > 0 || len(s.Labels) == 0 {
				return nil
			}
			if _, old := s.Labels[mesh.RemovedGatewayNameLabel]; old {
				return []Finding{finding(field.NewPath("spec", "selector", "matchLabels"),
					fmt.Sprintf("Istio 1.24 and later no longer label gateway Pods %s: gateways created since match no selector on it", mesh.RemovedGatewayNameLabel),
					"attach the policy to the Gateway: targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: <gateway>}]")}
			}
			waypoints := mesh.WorkloadsWhere(s.SelectedBy(c.State, c.Settings.Root), func(w *Workload) bool { return mesh.IsWaypoint(w.Labels) })
			if len(waypoints) == 0 && !mesh.IsWaypoint(s.Labels) {
				return nil
			}
			return []Finding{finding(field.NewPath("spec", "selector", "matchLabels"),
				"the selector names waypoint Pods, and a waypoint takes only policies attached by targetRefs: this policy is enforced nowhere",
				"attach the policy to the waypoint, or to the Services it serves: targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: <waypoint>}]")}
		},
	}, {
		ID: "MG812", Name: "waypoint-binding-removed", Default: Deny, Kinds: []string{KindService, KindServiceEntry, KindNamespace, KindGateway}, OnDelete: true,
		Summary: "An UPDATE of a Service, ServiceEntry or Namespace, or an UPDATE or DELETE of a Gateway, that unbinds Services from the waypoint that enforces their JWT policies (`istio.io/use-waypoint` removed or `none`, the Gateway's class or `istio.io/waypoint-for` changed, the Gateway deleted); or a Service or ServiceEntry of an ambient namespace created, with JWT policies attached to its name, and no waypoint (deleted and created again without its binding).",
		Why:     "A regression against the live state, as MG303: the policies attached to those Services are enforced nowhere from then on.",
		Check: func(c *Context) []Finding {
			if c.Before == nil {
				return nil
			}
			if c.OldObject == nil {
				return createdUnbound(c)
			}
			namespaces := []string{c.Object.GetNamespace()}
			switch o := c.Object.(type) {
			case *corev1.Namespace:
				namespaces = []string{o.Name}
			case *Gateway:
				// Services of other namespaces may name it (istio.io/use-waypoint-namespace).
				namespaces = c.Before.NamespaceNames()
			}
			var unbound []string
			for _, ns := range namespaces {
				for _, before := range waypointTargets(c.Before, ns) {
					if gw, _ := mesh.ServiceWaypoint(c.Before, before); gw == nil || !hasJWTPolicyOn(c.Before, before) {
						continue
					}
					after, known := targetOf(c.State, ns, before.Kind, before.Name)
					if !known {
						after = before
					}
					if gw, _ := mesh.ServiceWaypoint(c.State, after); gw == nil {
						unbound = append(unbound, before.Kind+" "+ns+"/"+before.Name)
					}
				}
			}
			if len(unbound) == 0 {
				return nil
			}
			path := field.NewPath("metadata", "labels").Key(mesh.UseWaypointLabel)
			if gw, ok := c.Object.(*Gateway); ok && c.Operation == Update {
				old := c.OldObject.(*Gateway)
				switch {
				case gw.Spec.GatewayClassName != old.Spec.GatewayClassName:
					path = field.NewPath("spec", "gatewayClassName")
				case gw.Labels[mesh.WaypointForLabel] != old.Labels[mesh.WaypointForLabel]:
					path = field.NewPath("metadata", "labels").Key(mesh.WaypointForLabel)
				default:
					path = field.NewPath("spec", "listeners")
				}
			}
			if c.Operation == Delete {
				path = field.NewPath("metadata", "name")
			}
			return []Finding{finding(path,
				fmt.Sprintf("this %s unbinds %s from the waypoint that enforces their JWT policies: from then on nothing enforces them", strings.ToLower(string(c.Operation)), strings.Join(unbound, ", ")),
				"first move the JWT policies to the enforcement point the Services will have, or keep the binding")}
		},
	}, {
		ID: "MG813", Name: "ambient-inbound-not-captured", Default: Warn, Kinds: []string{KindPod},
		Summary: "A Pod meant for ambient mode, covered or selected by a JWT policy, that ztunnel does not intercept: `ambient.istio.io/bypass-inbound-capture: \"true\"`, `hostNetwork`, or a namespace istio-cni excludes (`kube-system`); or a Pod of an ambient namespace labelled `istio.io/dataplane-mode: none` with no sidecar, when created or relabelled.",
		Why:     "No inbound enforcement and no mTLS: only traffic that happens to pass a waypoint is checked. istio-cni takes a running Pod out of the mesh as soon as its label says none.",
		Check: judge(func(c *Context, w *Workload) []Finding {
			ns := c.State.Settings(w.Namespace).NamespaceLabels
			leaving := mesh.LeavesAmbient(ns, w)
			old, _ := c.OldObject.(*Workload)
			switch {
			case c.Operation == Update && (!leaving || old == nil || mesh.LeavesAmbient(ns, old)):
				return nil // only the label takes effect on a running Pod
			case !leaving && !mesh.MeantForAmbient(c.State, w):
				return nil
			}
			path, why := mesh.ZtunnelBypassed(w)
			if leaving {
				path, why = field.NewPath("metadata", "labels").Key(DataplaneModeLabel), "it leaves ambient mode (istio.io/dataplane-mode: none), and no sidecar takes its place"
			}
			if path == nil {
				return nil
			}
			// In scope: covered, or selected by a JWT policy (as written, or at its waypoint,
			// before the change too).
			inScope := c.Settings.Coverage != nil || len(mesh.ForWorkload(w, c.Settings.Root, c.State.RequestAuthentications))+len(c.protection(c.State, w).RAs) > 0 ||
				old != nil && len(c.protection(c.Before, old).RAs) > 0
			if !inScope {
				return nil
			}
			return []Finding{finding(path,
				fmt.Sprintf("%s: nothing enforces inbound policy on this Pod, and requests reach it unchecked", why),
				"let ztunnel intercept the Pod: remove the opt-out, or exempt the Pod from coverage on purpose")}
		}),
	}, {
		ID: "MG814", Name: "ambient-silent-field", Default: Deny, Kinds: []string{KindAuthorizationPolicy},
		Summary: "A policy without `targetRefs`, on ambient Pods, using `trustDomains`/`notTrustDomains` or the `when` keys `source.serviceAccount`, `source.trustDomain`, `remote.ip`, `connection.sni`. Deny for a DENY, warn for an ALLOW.",
		Why:     "istiod does not send them to ztunnel, with no status: a source that names only trust domains arrives empty and matches no connection (an ALLOW rule admits nothing by it, a DENY rule never fires), and beside other fields they are not checked.",
		Check: eachAPRule(allowOrDeny, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			fields := silentFields(r, at)
			ambient := c.ztunnelWorkloads(p)
			if len(fields) == 0 || len(ambient) == 0 {
				return nil
			}
			var out []Finding
			for _, silent := range fields {
				f := finding(silent.path,
					fmt.Sprintf("%s run in ambient mode, and istiod does not send this field to ztunnel, with no status: %s", c.describe(ambient), silent.effect),
					"match principals or namespaces instead, or attach the policy to the workloads' waypoint with targetRefs (kind: Service)")
				if dataplane.IsAllow(p) {
					f = f.as(Warn)
				}
				out = append(out, f)
			}
			return out
		}),
	}}
}

// createdUnbound is MG812 for a Service or ServiceEntry created in an ambient namespace:
// the JWT policies attached to its name are enforced nowhere if no waypoint serves it.
func createdUnbound(c *Context) []Finding {
	var t mesh.WaypointTarget
	switch o := c.Object.(type) {
	case *corev1.Service:
		t = mesh.ServiceTarget(o)
	case *ServiceEntry:
		t = mesh.EntryTarget(o)
	default:
		return nil
	}
	if c.State.Settings(t.Namespace).NamespaceLabels[DataplaneModeLabel] != "ambient" || !hasJWTPolicyOn(c.State, t) {
		return nil
	}
	gw, why := mesh.ServiceWaypoint(c.State, t)
	if gw != nil || why == "" {
		return nil
	}
	return []Finding{finding(field.NewPath("metadata", "labels").Key(mesh.UseWaypointLabel),
		fmt.Sprintf("JWT policies are attached to %s %s/%s, and no waypoint enforces them: %s", t.Kind, t.Namespace, t.Name, why),
		"bind it to the waypoint that enforces them ("+mesh.UseWaypointLabel+": <waypoint>)")}
}

// hasJWTPolicyOn tells whether a JWT policy is attached by targetRefs to a Service or
// ServiceEntry.
func hasJWTPolicyOn(st State, t mesh.WaypointTarget) bool {
	attached := func(o metav1.Object) bool {
		return isJWTPolicy(o) && slices.ContainsFunc(mesh.ScopeOf(o).TargetRefs, func(r *typev1beta1.PolicyTargetReference) bool {
			return r.Kind == t.Kind && r.Name == t.Name
		})
	}
	return slices.ContainsFunc(st.RequestAuthentications(t.Namespace), func(ra *RequestAuthentication) bool { return attached(ra) }) ||
		slices.ContainsFunc(st.AuthorizationPolicies(t.Namespace), func(ap *AuthorizationPolicy) bool { return attached(ap) })
}

// waypointTargets are the Services and ServiceEntries of a namespace.
func waypointTargets(st State, ns string) []mesh.WaypointTarget {
	var out []mesh.WaypointTarget
	for _, svc := range st.Services(ns) {
		out = append(out, mesh.ServiceTarget(svc))
	}
	for _, se := range st.ServiceEntries(ns) {
		out = append(out, mesh.EntryTarget(se))
	}
	return out
}

// targetOf finds the Service or ServiceEntry a targetRef names; false when the state holds
// no such object, or the reference names another kind.
func targetOf(st State, ns, kind, name string) (mesh.WaypointTarget, bool) {
	switch kind {
	case "Service":
		if i := slices.IndexFunc(st.Services(ns), func(s *corev1.Service) bool { return s.Name == name }); i >= 0 {
			return mesh.ServiceTarget(st.Services(ns)[i]), true
		}
	case KindServiceEntry:
		if i := slices.IndexFunc(st.ServiceEntries(ns), func(s *ServiceEntry) bool { return s.Name == name }); i >= 0 {
			return mesh.EntryTarget(st.ServiceEntries(ns)[i]), true
		}
	}
	return mesh.WaypointTarget{}, false
}

// ingressTo names an HTTPRoute of the Service's namespace that an ingress gateway (a
// Gateway not of class istio-waypoint) sends to the Service by, or "".
func ingressTo(st State, svc *corev1.Service) string {
	for _, route := range st.HTTPRoutes(svc.Namespace) {
		if !slices.ContainsFunc(route.Spec.ParentRefs, func(p gatewayv1.ParentReference) bool { return isIngressParent(st, route.Namespace, p) }) {
			continue
		}
		for _, rule := range route.Spec.Rules {
			if slices.ContainsFunc(rule.BackendRefs, func(b gatewayv1.HTTPBackendRef) bool {
				return isServiceRef(b.BackendObjectReference, route.Namespace, svc)
			}) {
				return fmt.Sprintf("HTTPRoute %s/%s of an ingress gateway", route.Namespace, route.Name)
			}
		}
	}
	return ""
}

// isIngressParent tells whether a route's parent is a Gateway that is no waypoint.
func isIngressParent(st State, ns string, p gatewayv1.ParentReference) bool {
	if p.Kind != nil && *p.Kind != "Gateway" {
		return false
	}
	if p.Namespace != nil {
		ns = string(*p.Namespace)
	}
	i := slices.IndexFunc(st.Gateways(ns), func(g *Gateway) bool { return g.Name == string(p.Name) })
	return i < 0 && !st.KnowsGateways() || i >= 0 && string(st.Gateways(ns)[i].Spec.GatewayClassName) != mesh.WaypointClass
}

// isServiceRef tells whether a backend reference names the Service.
func isServiceRef(b gatewayv1.BackendObjectReference, ns string, svc *corev1.Service) bool {
	if b.Namespace != nil {
		ns = string(*b.Namespace)
	}
	return (b.Kind == nil || *b.Kind == "Service") && (b.Group == nil || *b.Group == "") && string(b.Name) == svc.Name && ns == svc.Namespace
}

// waypointBypass is MG808 of a RequestAuthentication.
func waypointBypass(c *Context, ra *RequestAuthentication) []Finding {
	s := mesh.ScopeOf(ra)
	var out []Finding
	for i, r := range s.TargetRefs {
		// The Services whose tokens are checked at a waypoint only: the one named, or every
		// Service of the namespace bound to the waypoint Gateway named.
		var services []*corev1.Service
		for _, svc := range c.State.Services(s.Namespace) {
			switch gw, _ := mesh.ServiceWaypoint(c.State, mesh.ServiceTarget(svc)); {
			case r.Kind == "Service" && svc.Name == r.Name,
				r.Kind == "Gateway" && gw != nil && gw.Namespace == s.Namespace && gw.Name == r.Name:
				services = append(services, svc)
			}
		}
		for _, svc := range services {
			if f, ok := serviceBypass(c, svc, field.NewPath("spec", "targetRefs").Index(i)); ok {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// serviceBypass is MG808's finding at field for a Service whose tokens its waypoint
// checks, where ztunnel lets another caller reach one of its workloads directly.
func serviceBypass(c *Context, svc *corev1.Service, path *field.Path) (Finding, bool) {
	gw, _ := mesh.ServiceWaypoint(c.State, mesh.ServiceTarget(svc))
	if gw == nil || mesh.WaypointFor(c.State, gw) == "all" {
		return Finding{}, false
	}
	ws := c.State.Workloads(svc.Namespace, svc.Spec.Selector)
	if len(ws) == 0 {
		ws = []*Workload{{ObjectMeta: &metav1.ObjectMeta{Namespace: svc.Namespace, Labels: svc.Spec.Selector}, Kind: KindPod, Virtual: true}}
	}
	for _, w := range c.ambientOf(ws) {
		who := bypassesWaypoint(c.State, c.Settings.Root, w, gw, mesh.ForWorkload(w, c.Settings.Root, c.State.AuthorizationPolicies))
		if who == "" {
			continue
		}
		f := finding(path,
			fmt.Sprintf("tokens are checked at waypoint %s/%s only, and ztunnel lets %s reach %s directly, with no token", gw.Namespace, gw.Name, who, c.describe([]*Workload{w})),
			fmt.Sprintf("admit only the waypoint at ztunnel: an ALLOW policy selecting the Pods with principals: [%q]", mesh.WaypointIdentity(gw)))
		if c.Settings.Coverage != nil {
			f = f.as(Deny)
		}
		return f, true
	}
	return Finding{}, false
}

// ingressSkipsWaypoint is MG809 of a RequestAuthentication.
func ingressSkipsWaypoint(c *Context, ra *RequestAuthentication) []Finding {
	s := mesh.ScopeOf(ra)
	var out []Finding
	for i, r := range s.TargetRefs {
		if r.Kind != "Service" {
			continue
		}
		j := slices.IndexFunc(c.State.Services(s.Namespace), func(svc *corev1.Service) bool { return svc.Name == r.Name })
		if j < 0 {
			continue
		}
		svc := c.State.Services(s.Namespace)[j]
		if gw, _ := mesh.ServiceWaypoint(c.State, mesh.ServiceTarget(svc)); gw == nil || dataplane.IngressUsesWaypoint(c.State, svc.Namespace, []string{svc.Name}) {
			continue
		}
		if ingress := ingressTo(c.State, svc); ingress != "" {
			out = append(out, finding(field.NewPath("spec", "targetRefs").Index(i),
				fmt.Sprintf("%s sends requests to Service %s/%s, and ingress traffic skips its waypoint: those requests reach the Pods with no token check", ingress, svc.Namespace, svc.Name),
				fmt.Sprintf("label the Service, or its namespace, %s: \"true\"", mesh.IngressUseWaypointLabel)))
		}
	}
	return out
}

// reJudgedOnChanges is a rule of RequestAuthentications that also judges the changes of
// other kinds that may make it find something: what it finds of a RequestAuthentication
// of the changed object's namespace after the change, and not before, is the change's
// doing, reported on it.
func reJudgedOnChanges(check func(*Context, *RequestAuthentication) []Finding) func(*Context) []Finding {
	return func(c *Context) []Finding {
		if ra, ok := c.Object.(*RequestAuthentication); ok {
			if c.Operation == Delete {
				return nil
			}
			return check(c, ra)
		}
		if c.Before == nil {
			return nil
		}
		ns := c.Object.GetNamespace()
		if n, ok := c.Object.(*corev1.Namespace); ok {
			ns = n.Name
		}
		before := *c
		before.State = c.Before
		for _, ra := range c.State.RequestAuthentications(ns) {
			if len(mesh.ScopeOf(ra).TargetRefs) == 0 {
				continue
			}
			found := check(c, ra)
			if len(found) == 0 || len(check(&before, ra)) > 0 {
				continue
			}
			f := found[0]
			f.Field, f.Message = changedField(c).String(), fmt.Sprintf("after this %s, for RequestAuthentication %s: %s", strings.ToLower(string(c.Operation)), ref(ra), f.Message)
			return []Finding{f}
		}
		return nil
	}
}

// changedField is where a change re-judged for the policies it concerns is: the name of
// what it deletes, the spec of an AuthorizationPolicy, else the labels.
func changedField(c *Context) *field.Path {
	switch _, ap := c.Object.(*AuthorizationPolicy); {
	case c.Operation == Delete:
		return field.NewPath("metadata", "name")
	case ap:
		return field.NewPath("spec")
	}
	return field.NewPath("metadata", "labels")
}
