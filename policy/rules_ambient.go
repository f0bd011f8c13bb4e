package policy

import "fmt"

// ambientRules judge policies by the proxy that enforces them in Istio's ambient data plane:
// ztunnel takes what selector, namespace and root policies say, at L4 only; waypoints take
// only what targetRefs attach to them.
func ambientRules() []Rule {
	return []Rule{{
		ID: "MG801", Name: "ambient-ra-not-enforced", Default: Deny, Kinds: []string{KindRequestAuthentication},
		Summary: "A RequestAuthentication without `targetRefs` whose workloads include ambient Pods.",
		Why:     "ztunnel validates no tokens and waypoints ignore selector policies: tokens are never checked, and an AuthorizationPolicy on them has nothing to match.",
		Check: judge(func(c *Context, ra *RequestAuthentication) []Finding {
			if len(scopeOf(ra).targetRefs) > 0 {
				return nil
			}
			ambient := ambientOf(c.State, c.workloadsOf(ra))
			if len(ambient) == 0 {
				return nil
			}
			return []Finding{finding("spec.selector",
				fmt.Sprintf("%s run in ambient mode, where no proxy loads this RequestAuthentication: ztunnel validates no tokens, and waypoints take only policies attached by targetRefs", c.describe(ambient)),
				"bind the workloads' Service to a waypoint (istio.io/use-waypoint) and attach the RequestAuthentication to it: targetRefs: [{kind: Service, group: \"\", name: <service>}]")}
		}),
	}, {
		ID: "MG802", Name: "ambient-ztunnel-deny-noop", Default: Deny, Kinds: []string{KindAuthorizationPolicy},
		Summary: "A DENY policy without `targetRefs`, on ambient Pods, with a rule that has a clause (`from`, `to`, or one `when`) made only of HTTP-level fields.",
		Why:     "ztunnel receives that clause empty and skips it: the rule never fires, and what it should deny gets through (istio#61126).",
		Check: eachAPRule(denyOnly, func(c *Context, p *AuthorizationPolicy, r *apRule, at string) []Finding {
			clause := ztunnelNoOpClause(r, at)
			if clause == "" || len(scopeOf(p).targetRefs) > 0 {
				return nil
			}
			ambient := ambientOf(c.State, c.workloadsOf(p))
			if len(ambient) == 0 {
				return nil
			}
			return []Finding{finding(clause,
				fmt.Sprintf("%s run in ambient mode: ztunnel enforces L4 only, gets this clause empty and skips the rule, so it never denies anything", c.describe(ambient)),
				"attach the policy to the workloads' waypoint with targetRefs (kind: Service), where HTTP fields are enforced; keep only L4 fields (principals, namespaces, ipBlocks, ports) in policies for ztunnel")}
		}),
	}, {
		ID: "MG805", Name: "ambient-ztunnel-action-unsupported", Default: Deny, Kinds: []string{KindAuthorizationPolicy},
		Summary: "A CUSTOM (deny) or AUDIT (warn) policy without `targetRefs` on ambient Pods.",
		Why:     "istiod does not send CUSTOM or AUDIT policies to ztunnel: the external authorization is never asked, the audit never logged.",
		Check: judge(func(c *Context, p *AuthorizationPolicy) []Finding {
			custom := p.Spec.Action == apActionCustom
			if !custom && p.Spec.Action != apActionAudit || len(scopeOf(p).targetRefs) > 0 {
				return nil
			}
			ambient := ambientOf(c.State, c.workloadsOf(p))
			if len(ambient) == 0 {
				return nil
			}
			f := finding("spec.action",
				fmt.Sprintf("%s run in ambient mode, and ztunnel is never sent a %s policy: it is not enforced", c.describe(ambient), p.Spec.Action),
				"attach the policy to the workloads' waypoint with targetRefs (kind: Service)")
			if !custom {
				f = f.as(Warn)
			}
			return []Finding{f}
		}),
	}}
}
