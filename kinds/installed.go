package kinds

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/wait"
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

// WaitInstalled asks Installed every interval until the cluster serves every kind meshguard
// needs (Istio's CRDs may be installed after meshguard), telling waiting why not each time.
// It returns the installed kinds, or ctx's error.
func WaitInstalled(ctx context.Context, mapper meta.RESTMapper, interval time.Duration, waiting func(error)) ([]*Kind, error) {
	var installed []*Kind
	err := wait.PollUntilContextCancel(ctx, interval, true, func(context.Context) (bool, error) {
		var err error
		if installed, err = Installed(mapper); err != nil {
			waiting(err)
			return false, nil
		}
		return true, nil
	})
	return installed, err
}
