package kinds

import (
	"strings"

	"github.com/go-json-experiment/json"
)

// containers is what IstiodVersion reads of a Pod or a controller's pod template.
type containers struct {
	Containers []struct {
		Name  string `json:"name"`
		Image string `json:"image"`
	} `json:"containers"`
}

// IstiodVersion returns the image tag of istiod's discovery container (istio/pilot) in a
// workload manifest (a Pod, or a controller's pod template), or "": an istiod among the
// manifests tells the control plane's version (MG701).
func IstiodVersion(manifest []byte) string {
	var m struct {
		Spec struct {
			containers
			Template *struct {
				Spec containers `json:"spec"`
			} `json:"template"`
			JobTemplate *struct {
				Spec struct {
					Template *struct {
						Spec containers `json:"spec"`
					} `json:"template"`
				} `json:"spec"`
			} `json:"jobTemplate"`
		} `json:"spec"`
	}
	if json.Unmarshal(manifest, &m, jsonOptions) != nil {
		return ""
	}
	spec := m.Spec.containers
	switch {
	case m.Spec.Template != nil:
		spec = m.Spec.Template.Spec
	case m.Spec.JobTemplate != nil && m.Spec.JobTemplate.Spec.Template != nil:
		spec = m.Spec.JobTemplate.Spec.Template.Spec
	}
	for _, c := range spec.Containers {
		image, _, _ := strings.Cut(c.Image, "@")
		repo, tag, tagged := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
		if tagged && (repo == "pilot" || c.Name == "discovery" && strings.Contains(repo, "pilot")) {
			return tag
		}
	}
	return ""
}
