package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/meshguard/meshguard/check"
	"github.com/meshguard/meshguard/policy"
)

type checkOptions struct {
	files     []string
	config    string
	output    string
	failOn    string
	namespace string
}

func newCheckCommand() *cobra.Command {
	o := &checkOptions{}
	cmd := &cobra.Command{
		Use:   "check [-f PATH]... [--config FILE] [-o text|json|sarif] [--fail-on deny|warn]",
		Short: "Judge a folder of manifests offline, for CI",
		Long: `check reads Kubernetes manifests (files, folders searched for .yaml, .yml and .json, or - for
standard input, e.g. the output of kustomize build or helm template) and judges every Istio
security resource and workload against the whole bundle.

Exit code: 0 when no finding reaches --fail-on, 1 when one does, 2 on bad usage or input.`,
		Example: `  meshguard check -f manifests/
  kustomize build overlays/prod | meshguard check -f - -o sarif > meshguard.sarif
  meshguard check -f k8s/ --config guardrails.yaml --fail-on warn`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.files = append(o.files, args...)
			return o.run(cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "file, folder or - (standard input) to read; repeatable")
	f.StringVar(&o.config, "config", "", "YAML file of MeshGuardrail objects to apply")
	f.StringVarP(&o.output, "output", "o", "text", "output format: "+strings.Join(check.Formats, ", "))
	f.StringVar(&o.failOn, "fail-on", string(policy.Deny), "exit 1 when a finding of this action or stricter is found: deny or warn")
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of objects that name none")
	return cmd
}

func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func (o *checkOptions) run(stdin io.Reader, stdout io.Writer) error {
	if len(o.files) == 0 {
		return usageError("no input: give -f PATH (a file, a folder, or - for standard input)")
	}
	if !slices.Contains(check.Formats, o.output) {
		return usageError("-o %q: want one of %s", o.output, strings.Join(check.Formats, ", "))
	}
	failOn := policy.Action(o.failOn)
	if failOn != policy.Deny && failOn != policy.Warn {
		return usageError("--fail-on %q: want deny or warn", o.failOn)
	}
	engine := policy.NewEngine()
	loader := &check.Loader{Namespace: o.namespace, Stdin: stdin, Engine: engine}
	bundle, err := loader.Load(o.files...)
	if err != nil {
		return &exitError{code: exitUsage, err: inputErrors(err)}
	}
	if o.config != "" {
		if err := o.addGuardrails(loader, bundle); err != nil {
			return err
		}
	}
	report := check.Run(engine, bundle)
	if err := check.Write(stdout, o.output, report, engine.Rules(), o.output == "text" && colourful(stdout)); err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if report.Fails(failOn) {
		return &exitError{code: exitFindings}
	}
	return nil
}

// addGuardrails reads --config, which must hold MeshGuardrails only, into the bundle's state.
func (o *checkOptions) addGuardrails(loader *check.Loader, bundle *check.Bundle) error {
	cfg, err := loader.Load(o.config)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("--config: %w", inputErrors(err))}
	}
	if len(cfg.Objects) > 0 {
		obj := cfg.Objects[0]
		return usageError("--config %s: %s holds %s %q; it may hold only MeshGuardrail objects", o.config, cfg.Sources[obj], policy.KindOf(obj), obj.GetName())
	}
	if len(cfg.State.Rails) == 0 {
		return usageError("--config %s: holds no MeshGuardrail", o.config)
	}
	bundle.State.Rails = append(bundle.State.Rails, cfg.State.Rails...)
	return nil
}

// inputErrors puts one input error on each line.
func inputErrors(err error) error {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return err
	}
	var lines []string
	for _, e := range joined.Unwrap() {
		lines = append(lines, e.Error())
	}
	return errors.New(strings.Join(lines, "\nerror: "))
}

// colourful tells whether w is a terminal that wants colour (https://no-color.org).
func colourful(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == ""
}
