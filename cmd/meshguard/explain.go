package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/check"
	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/products"
)

type explainOptions struct {
	input     inputFlags
	namespace string
	to        string
	request   requestFlags
	cases     string
	proxies   bool
	output    string
}

// requestFlags describe a request, on the command line or in a case of --cases.
type requestFlags struct {
	Method        string            `json:"method,omitempty"`
	Path          string            `json:"path,omitempty"`
	Host          string            `json:"host,omitempty"`
	Port          string            `json:"port,omitempty"`
	Token         string            `json:"token,omitempty"`
	FromPrincipal string            `json:"fromPrincipal,omitempty"`
	FromNamespace string            `json:"fromNamespace,omitempty"`
	FromPlaintext bool              `json:"fromPlaintext,omitempty"`
	FromIP        string            `json:"fromIP,omitempty"`
	Via           string            `json:"via,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
}

// explainCase is one entry of a --cases file: a request to a workload, and the verdict
// expected.
type explainCase struct {
	Name    string         `json:"name"`
	Source  string         `json:"source,omitempty"`
	To      string         `json:"to"`
	Request requestFlags   `json:"request"`
	Expect  policy.Verdict `json:"expect"`
}

func newExplainCommand() *cobra.Command {
	o := &explainOptions{}
	cmd := &cobra.Command{
		Use:   "explain (-f PATH... | --cluster) --to KIND/NAMESPACE/NAME [request flags] | (-f PATH... | --cluster) --cases FILE",
		Short: "Explain what happens to one request: the verdict, and why",
		Long: `explain follows one request to a workload through the proxies that enforce its policies (its
sidecar, or ztunnel and its waypoint, and an ingress gateway with --via gateway): what each
RequestAuthentication does with the token, each CUSTOM, DENY and ALLOW policy and rule in
order and the first field that did not match, and what decided, named as Envoy logs it
(ns[NS]-policy[NAME]-rule[I]).

Verdicts: allow (200), deny (403, or a connection refused for a caller without mTLS under
STRICT), unauthenticated (401: a token was presented and rejected), undetermined (a CUSTOM
provider decides).

--token: none (the default), invalid (a signature no key verifies), or the token's claims:
iss=https://idp.example.com,sub=alice,aud=web|api,groups=dev (values of a claim joined by |).
The caller: --from-principal cluster.local/ns/X/sa/Y, --from-namespace X (its default
service account), or --from-plaintext (the default: a client without mTLS; with --via
waypoint, which takes callers of the mesh only, the default service account of the
workload's namespace).

With --proxies, it follows no request: it lists the proxies on the routes to the workload
and what each enforces, every rule as the proxy receives it (ztunnel takes the L4 part of
the rules), or why it does not.

With --cases FILE, a YAML list of {name, source, to, request: {method, path, host, port,
token, headers, fromPrincipal, fromNamespace, fromPlaintext, fromIP, via}, expect}, it explains each
and exits 1 when a verdict differs from what is expected.`,
		Example: `  meshguard explain -f k8s/ --to Deployment/shop/web --path /api --token iss=https://idp.example.com,sub=alice,aud=web
  meshguard explain -f k8s/ --to Service/shop/web --from-namespace frontend -o json
  meshguard explain -f k8s/ --cases cases.yaml
  meshguard explain --cluster --to Pod/shop/web-5d8f7 --proxies`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.input.notices = cmd.ErrOrStderr()
			return o.run(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	o.input.addTo(f)
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of objects that name none")
	f.StringVar(&o.to, "to", "", "the workload: Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Service, as KIND/NAMESPACE/NAME")
	f.StringVar(&o.request.Method, "method", "GET", "the request's method")
	f.StringVar(&o.request.Path, "path", "/", "the request's path")
	f.StringVar(&o.request.Host, "host", "", "the request's host")
	f.StringVar(&o.request.Port, "port", "", "the workload's port the request is for")
	f.StringVar(&o.request.Token, "token", "none", "none, invalid, or the token's claims: iss=...,sub=...,aud=a|b,<claim>=v1|v2")
	f.StringVar(&o.request.FromPrincipal, "from-principal", "", "the caller's mTLS identity: cluster.local/ns/NAMESPACE/sa/NAME")
	f.StringVar(&o.request.FromNamespace, "from-namespace", "", "the caller's namespace, with mTLS under its default service account")
	f.BoolVar(&o.request.FromPlaintext, "from-plaintext", false, "the caller has no mTLS (the default)")
	f.StringVar(&o.request.FromIP, "from-ip", "", "the caller's address")
	f.StringToStringVar(&o.request.Headers, "header", nil, "a header of the request, NAME=VALUE; repeatable")
	f.StringVar(&o.request.Via, "via", "", "the route: direct (to the Pod), waypoint or gateway; by default the one Istio takes for Service traffic")
	f.StringVar(&o.cases, "cases", "", "YAML file of cases to explain, each with its expected verdict")
	f.BoolVar(&o.proxies, "proxies", false, "list what each proxy on the routes to the workload enforces, instead of following a request")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (o *explainOptions) run(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	if o.output != "text" && o.output != "json" {
		return usageError("-o %q: want text or json", o.output)
	}
	if (o.to == "") == (o.cases == "") {
		return usageError("give --to KIND/NAMESPACE/NAME, or --cases FILE")
	}
	if o.proxies && o.to == "" {
		return usageError("--proxies lists the proxies on the way to the workload --to names")
	}
	engine := policy.NewEngine()
	in, err := o.input.load(ctx, stdin, engine, o.namespace)
	if err != nil {
		return err
	}
	report := check.Run(engine, in.bundle) // labels covered workloads, as admission would
	if o.cases != "" {
		return o.runCases(ctx, in, stdout)
	}
	if o.proxies {
		return o.writeProxies(ctx, in, stdout)
	}
	e, w, err := in.explain(ctx, o.to, o.request)
	if err != nil {
		return usageError("%v", err)
	}
	findings := findingsOn(report, e.Explanation, w)
	if o.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			*explanation
			Findings []policy.Finding `json:"findings"`
		}{e, findings})
	}
	return writeExplanation(stdout, o.request, w, e, findings)
}

// explanation is a request's explanation; for a Service of several workloads, the first
// one's, and each one's verdict.
type explanation struct {
	*products.Explanation
	Backends []backend `json:"backends,omitempty"`
}

// backend is the verdict of one workload behind a Service.
type backend struct {
	Workload  string         `json:"workload"`
	Verdict   policy.Verdict `json:"verdict"`
	DecidedBy string         `json:"decidedBy"`
}

// explain explains a request to the workloads to names (KIND/NAMESPACE/NAME). Where a
// Service's workloads would answer it differently, the verdict is undetermined: it depends
// on the one the request reaches.
func (in *input) explain(ctx context.Context, to string, flags requestFlags) (*explanation, *policy.Workload, error) {
	ws, err := in.targets(ctx, to)
	if err != nil {
		return nil, nil, err
	}
	req, err := flags.request()
	if err != nil {
		return nil, nil, err
	}
	if flags.Via == products.ViaWaypoint && req.FromPrincipal == "" && !flags.FromPlaintext {
		// A waypoint takes callers of the mesh only: by default one of the workload's
		// namespace.
		req.FromPrincipal = "cluster.local/ns/" + ws[0].Namespace + "/sa/default"
	}
	var out *explanation
	for _, w := range ws {
		e, err := products.Explain(in.bundle.State, in.bundle.State.Settings("").Root, w, flags.Via, req)
		if err != nil {
			return nil, nil, err
		}
		if out == nil {
			out = &explanation{Explanation: e}
		}
		if len(ws) > 1 {
			out.Backends = append(out.Backends, backend{fmt.Sprintf("%s %s/%s", w.Kind, w.Namespace, w.Name), e.Verdict, e.DecidedBy})
		}
	}
	for _, b := range out.Backends {
		if b.Verdict != out.Verdict {
			undetermined := *out.Explanation
			undetermined.Verdict, undetermined.Status = policy.VerdictUndetermined, nil
			undetermined.DecidedBy = "the Service's workloads answer differently: it depends on the one the request reaches"
			out.Explanation = &undetermined
			break
		}
	}
	return out, ws[0], nil
}

// request reads the flags of a request.
func (f requestFlags) request() (products.Request, error) {
	req := products.Request{Method: f.Method, Path: f.Path, Host: f.Host, Port: f.Port, Headers: f.Headers, FromIP: f.FromIP, FromPrincipal: f.FromPrincipal}
	switch {
	case f.FromPlaintext && (f.FromPrincipal != "" || f.FromNamespace != ""):
		return req, fmt.Errorf("--from-plaintext: a caller without mTLS has no principal nor namespace")
	case f.FromPrincipal == "" && f.FromNamespace != "":
		req.FromPrincipal = "cluster.local/ns/" + f.FromNamespace + "/sa/default"
	}
	switch f.Token {
	case "", "none":
	case "invalid":
		req.Token = &policy.Token{Invalid: true, Claims: map[string][]string{}}
	default:
		claims := map[string][]string{}
		for _, pair := range strings.Split(f.Token, ",") {
			k, v, ok := strings.Cut(pair, "=")
			if !ok || k == "" {
				return req, fmt.Errorf("--token %q: want none, invalid, or claims as iss=...,sub=...,aud=a|b", f.Token)
			}
			claims[k] = strings.Split(v, "|")
		}
		if claims["iss"] == nil {
			return req, fmt.Errorf("--token %q: a token names its issuer (iss=...)", f.Token)
		}
		req.Token = &policy.Token{Claims: claims}
	}
	return req, nil
}

// findingsOn are the findings of the run on the objects the request met: the workload,
// and the policies on its path.
func findingsOn(report check.Report, e *products.Explanation, w *policy.Workload) []policy.Finding {
	findings := []policy.Finding{}
	for _, r := range report.On(w, e.Objects) {
		findings = append(findings, r.Finding)
	}
	return findings
}

// writeExplanation writes an explanation for a person: the request, each proxy on its path
// and what it did, the verdict, and the findings that bear on it.
func writeExplanation(w io.Writer, req requestFlags, target *policy.Workload, e *explanation, findings []policy.Finding) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	caller := "a caller without mTLS"
	switch {
	case req.FromPrincipal != "":
		caller = req.FromPrincipal
	case req.FromNamespace != "":
		caller = "namespace " + req.FromNamespace
	}
	fmt.Fprintf(tw, "%s %s to %s %s/%s from %s, token: %s\nroute: %s\n", req.Method, req.Path, target.Kind, target.Namespace, target.Name, caller, cmp.Or(req.Token, "none"), e.Route)
	for _, h := range e.Path {
		fmt.Fprintf(tw, "\n%s\n", h.Proxy)
		if h.Authentication != "" {
			fmt.Fprintf(tw, "  token: %s\n", h.Authentication)
		}
		for _, p := range h.Policies {
			dry := ""
			if p.DryRun {
				dry = " (dry run)"
			}
			fmt.Fprintf(tw, "  %s %s/%s%s\n", p.Action, p.Namespace, p.Name, dry)
			for _, r := range p.Rules {
				switch {
				case r.Skipped != "":
					fmt.Fprintf(tw, "    rule[%d]\tskipped: %s\n", r.Rule, r.Skipped)
				case r.Matched:
					fmt.Fprintf(tw, "    rule[%d]\tmatched\n", r.Rule)
				default:
					fmt.Fprintf(tw, "    rule[%d]\tno match: %s\n", r.Rule, r.Mismatch)
				}
			}
		}
		fmt.Fprintf(tw, "  → %s: %s\n", h.Verdict, h.DecidedBy)
	}
	status := "no HTTP status: the external authorizer decides"
	switch {
	case e.Verdict == policy.VerdictDeny:
		status = "no HTTP status: the connection is refused or reset"
	case e.Verdict == policy.VerdictUndetermined && len(e.Backends) > 0:
		status = "the status of the workload the request reaches"
	}
	if e.Status != nil {
		status = fmt.Sprint(*e.Status)
	}
	fmt.Fprintf(tw, "\nverdict: %s (%s), decided by %s\n", e.Verdict, status, e.DecidedBy)
	for _, b := range e.Backends {
		fmt.Fprintf(tw, "  %s: %s, decided by %s\n", b.Workload, b.Verdict, b.DecidedBy)
	}
	if e.Shadow != nil {
		fmt.Fprintf(tw, "dry-run policies would: %s, decided by %s\n", e.Shadow.Verdict, e.Shadow.DecidedBy)
	}
	for _, f := range findings {
		fmt.Fprintf(tw, "%s %s %s on %s %s/%s: %s\n", f.Action, f.Rule, f.Name, f.Kind, f.Namespace, f.ObjectName, f.Message)
	}
	return tw.Flush()
}

// runCases explains each case of --cases and reports those whose verdict is not expected.
func (o *explainOptions) runCases(ctx context.Context, in *input, stdout io.Writer) error {
	data, err := os.ReadFile(o.cases)
	if err != nil {
		return usageError("--cases: %v", err)
	}
	var cases []explainCase
	if err := yaml.UnmarshalStrict(data, &cases); err != nil {
		return usageError("--cases %s: %v", o.cases, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	mismatches := 0
	for i, c := range cases {
		if c.Request.Method == "" {
			c.Request.Method = "GET"
		}
		if c.Request.Path == "" {
			c.Request.Path = "/"
		}
		e, _, err := in.explain(ctx, c.To, c.Request)
		if err != nil {
			return usageError("--cases %s: case %d (%s): %v", o.cases, i+1, c.Name, err)
		}
		if e.Verdict != c.Expect {
			if mismatches == 0 {
				fmt.Fprintln(tw, "CASE\tEXPECTED\tGOT\tDECIDED BY")
			}
			mismatches++
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Expect, e.Verdict, e.DecidedBy)
		}
	}
	fmt.Fprintf(tw, "%d cases, %d as expected\n", len(cases), len(cases)-mismatches)
	if err := tw.Flush(); err != nil {
		return err
	}
	if mismatches > 0 {
		return &exitError{code: exitFindings}
	}
	return nil
}

// writeProxies writes what each proxy on the routes to the workloads --to names enforces.
func (o *explainOptions) writeProxies(ctx context.Context, in *input, stdout io.Writer) error {
	ws, err := in.targets(ctx, o.to)
	if err != nil {
		return usageError("%v", err)
	}
	type workload struct {
		Workload string                      `json:"workload"`
		Proxies  []products.ProxyEnforcement `json:"proxies"`
	}
	out := make([]workload, len(ws))
	for i, w := range ws {
		out[i] = workload{fmt.Sprintf("%s %s/%s", w.Kind, w.Namespace, w.Name), products.EnforcementAt(in.bundle.State, in.bundle.State.Settings("").Root, w)}
	}
	if o.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, w := range out {
		fmt.Fprintln(tw, w.Workload)
		if len(w.Proxies) == 0 {
			fmt.Fprintln(tw, "  no proxy intercepts its inbound traffic: nothing is enforced")
		}
		for _, p := range w.Proxies {
			fmt.Fprintf(tw, "\n  %s (routes: %s)\n    callers: %s\n", p.Proxy, strings.Join(p.Routes, ", "), p.MTLS)
			if len(p.RequestAuthentications) > 0 {
				fmt.Fprintf(tw, "    validates tokens: %s\n", strings.Join(p.RequestAuthentications, ", "))
			}
			for _, r := range p.Rules {
				dry := ""
				if r.DryRun {
					dry = " (dry run)"
				}
				what := r.Matches
				if r.Skipped != "" {
					what = "not enforced: " + r.Skipped
				}
				fmt.Fprintf(tw, "    %s %s%s rule[%d]\t%s\n", r.Action, r.Policy, dry, r.Rule, what)
			}
		}
	}
	return tw.Flush()
}
