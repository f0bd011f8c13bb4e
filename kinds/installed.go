package kinds

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
)

// Installed returns the cached kinds a cluster serves, as mapper knows them. A kind whose
// CRD is missing is left out if it is Optional; any other is an error: meshguard cannot
// judge without it.
func Installed(mapper meta.RESTMapper) ([]*Kind, error) {
	var out []*Kind
	for _, k := range Cached() {
		_, err := mapper.RESTMapping(k.GroupKind, k.Versions...)
		switch {
		case err == nil:
			out = append(out, k)
		case meta.IsNoMatchError(err) && k.Optional:
		default:
			return nil, fmt.Errorf("the cluster does not serve %s: %w", k, err)
		}
	}
	return out, nil
}
