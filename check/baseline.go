package check

import (
	"encoding/json"
	"fmt"
	"os"
)

// Baseline is the findings a repository had when it adopted meshguard: a run with it
// fails only on findings not in it. Findings are keyed by rule, object and field, not by
// line, so that edits elsewhere in a file keep them.
type Baseline struct {
	APIVersion string        `json:"apiVersion"`
	Kind       string        `json:"kind"`
	Findings   []BaselineKey `json:"findings"`
}

// BaselineKey names a finding in a baseline.
type BaselineKey struct {
	Rule      string `json:"rule"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Field     string `json:"field"`
}

const (
	baselineAPIVersion = "meshguard.io/v1alpha1"
	baselineKind       = "Baseline"
)

func keyOf(r Result) BaselineKey {
	return BaselineKey{Rule: r.Rule, Kind: r.Kind, Namespace: r.Namespace, Name: r.ObjectName, Field: r.Field}
}

// WriteBaseline records the report's findings, but those suppressed on their objects, in
// a file.
func WriteBaseline(path string, r Report) error {
	b := Baseline{APIVersion: baselineAPIVersion, Kind: baselineKind, Findings: []BaselineKey{}}
	for _, res := range r.Results {
		if res.Suppressed == nil {
			b.Findings = append(b.Findings, keyOf(res))
		}
	}
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// ReadBaseline reads a file WriteBaseline wrote.
func ReadBaseline(path string) (*Baseline, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b Baseline
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%s: not a meshguard baseline: %w", path, err)
	}
	if b.APIVersion != baselineAPIVersion || b.Kind != baselineKind {
		return nil, fmt.Errorf("%s: not a meshguard baseline (want apiVersion %s, kind %s; meshguard check --write-baseline writes one)", path, baselineAPIVersion, baselineKind)
	}
	return &b, nil
}

// Against marks the findings the baseline holds, each as many times as it holds it: they
// are reported, and fail nothing.
func (r Report) Against(b *Baseline) Report {
	left := map[BaselineKey]int{}
	for _, k := range b.Findings {
		left[k]++
	}
	out := Report{Results: []Result{}, Summary: Summary{Documents: r.Summary.Documents, Objects: r.Summary.Objects, Ignored: r.Summary.Ignored}}
	for _, res := range r.Results {
		if k := keyOf(res); res.Suppressed == nil && left[k] > 0 {
			left[k]--
			res.Baselined = true
		}
		out.add(res)
	}
	return out
}
