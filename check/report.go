package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/owenrumney/go-sarif/v2/sarif"

	"github.com/meshguard/meshguard/policy"
)

// Formats are the output formats of `meshguard check`.
var Formats = []string{"text", "json", "sarif"}

// Write prints the report in one of Formats. Colour is for terminals only.
func Write(w io.Writer, format string, r Report, rules []policy.Rule, colour bool) error {
	switch format {
	case "text":
		return writeText(w, r, colour)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "sarif":
		return writeSARIF(w, r, rules)
	}
	return fmt.Errorf("unknown output format %q (want %s)", format, strings.Join(Formats, ", "))
}

// ANSI styles for the text format.
const (
	red    = "\x1b[1;31m"
	yellow = "\x1b[1;33m"
	bold   = "\x1b[1m"
	dim    = "\x1b[2m"
	reset  = "\x1b[0m"
)

// writeText prints findings grouped by object, deny before warn, the fix under each one.
func writeText(w io.Writer, r Report, colour bool) error {
	paint := func(style, s string) string {
		if !colour {
			return s
		}
		return style + s + reset
	}
	var b strings.Builder
	var last policy.Finding
	for i, res := range r.Results {
		if i == 0 || res.Object != last.Object {
			if i > 0 {
				b.WriteByte('\n')
			}
			name := res.ObjectName
			if res.Namespace != "" {
				name = res.Namespace + "/" + name
			}
			fmt.Fprintf(&b, "%s %s  %s\n", paint(bold, res.Kind), paint(bold, name), paint(dim, res.Source.String()))
		}
		last = res.Finding
		label := paint(yellow, "WARN")
		if res.Action == policy.Deny {
			label = paint(red, "DENY")
		}
		fmt.Fprintf(&b, "  %s  %s %s  %s\n", label, res.Rule, res.Name, paint(dim, res.Field))
		fmt.Fprintf(&b, "        %s\n", res.Message)
		fmt.Fprintf(&b, "        fix: %s\n", res.Fix)
	}
	if len(r.Results) > 0 {
		b.WriteByte('\n')
	}
	s := r.Summary
	fmt.Fprintf(&b, "%d deny, %d warn in %d objects (%d documents read, %d of kinds meshguard does not judge)\n",
		s.Deny, s.Warn, s.Objects, s.Documents, s.Ignored)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeSARIF prints SARIF 2.1.0, as GitHub code scanning reads it.
func writeSARIF(w io.Writer, r Report, rules []policy.Rule) error {
	report, err := sarif.New(sarif.Version210)
	if err != nil {
		return err
	}
	run := sarif.NewRunWithInformationURI("meshguard", "https://github.com/meshguard/meshguard")
	for _, rule := range rules {
		level := "warning"
		if rule.Default == policy.Deny {
			level = "error"
		}
		run.AddRule(rule.ID).
			WithName(rule.Name).
			WithShortDescription(sarif.NewMultiformatMessageString(rule.Summary)).
			WithFullDescription(sarif.NewMultiformatMessageString(rule.Why)).
			WithHelpURI("https://github.com/meshguard/meshguard/blob/main/docs/rules.md#" + strings.ToLower(rule.ID)).
			WithDefaultConfiguration(sarif.NewReportingConfiguration().WithLevel(level))
	}
	for _, res := range r.Results {
		level := "warning"
		if res.Action == policy.Deny {
			level = "error"
		}
		msg := fmt.Sprintf("%s %s/%s %s: %s. Fix: %s", res.Kind, res.Namespace, res.ObjectName, res.Field, res.Message, res.Fix)
		result := run.CreateResultForRule(res.Rule).WithLevel(level).WithMessage(sarif.NewTextMessage(msg))
		if res.File != "" && res.File != "-" {
			loc := sarif.NewPhysicalLocation().WithArtifactLocation(sarif.NewSimpleArtifactLocation(res.File))
			if res.Line > 0 {
				loc = loc.WithRegion(sarif.NewSimpleRegion(res.Line, res.Line))
			}
			result.AddLocation(sarif.NewLocationWithPhysicalLocation(loc))
		}
	}
	report.AddRun(run)
	return report.PrettyWrite(w)
}
