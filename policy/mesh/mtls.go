package mesh

import (
	"strconv"

	securityv1beta1 "istio.io/api/security/v1beta1"
)

type mtls = securityv1beta1.PeerAuthentication_MutualTLS_Mode

// MTLSMode is the PeerAuthentication mode in force for a workload: the workload's own policy,
// else its namespace's, else the mesh's, else PERMISSIVE. Among equals the oldest wins, and
// UNSET defers to the next level.
func MTLSMode(st State, root string, w *Workload) mtls {
	mode, own := MTLSModes(st, root, w)
	return WeakestPort(own, mode)
}

// MTLSModes is the mode in force for a workload on the ports its own PeerAuthentication
// sets no mode for, and that policy (nil for none).
func MTLSModes(st State, root string, w *Workload) (mtls, *PeerAuthentication) {
	type level struct {
		namespace string
		workload  bool // selector policies, or namespace-wide ones
	}
	levels := []level{{root, false}}
	if w.Namespace != root {
		levels = []level{{w.Namespace, true}, {w.Namespace, false}, {root, false}}
	}
	// The workload's own policy may set ports' modes (portLevelMtls, read there only),
	// whatever level sets the mode of the rest.
	var own *PeerAuthentication
	for _, l := range levels {
		for _, pa := range st.PeerAuthentications(l.namespace) {
			sel := SelectorLabels(pa.Spec.Selector)
			if l.workload != (len(sel) > 0) || !Selects(sel, w.Labels) {
				continue
			}
			if l.workload {
				own = pa
			}
			if pa.Spec.Mtls != nil && pa.Spec.Mtls.Mode != securityv1beta1.PeerAuthentication_MutualTLS_UNSET {
				return pa.Spec.Mtls.Mode, own
			}
			break
		}
	}
	return securityv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE, own
}

// StrictPorts tells, for each port the workload's own PeerAuthentication (nil for none)
// sets a mode for, whether it is STRICT; mode is that of the other ports.
func StrictPorts(own *PeerAuthentication, mode mtls) map[string]bool {
	if own == nil || len(own.Spec.PortLevelMtls) == 0 {
		return nil
	}
	out := map[string]bool{}
	for port, m := range own.Spec.PortLevelMtls {
		portMode := m.GetMode()
		if portMode == securityv1beta1.PeerAuthentication_MutualTLS_UNSET {
			portMode = mode
		}
		out[strconv.FormatUint(uint64(port), 10)] = portMode == securityv1beta1.PeerAuthentication_MutualTLS_STRICT
	}
	return out
}

// WeakestPort is mode, or the weakest mode the workload's own PeerAuthentication (nil for
// none) sets for one of its ports: plaintext callers reach the workload on that port.
func WeakestPort(pa *PeerAuthentication, mode mtls) mtls {
	if pa == nil {
		return mode
	}
	for _, port := range pa.Spec.PortLevelMtls {
		if m := port.GetMode(); m != securityv1beta1.PeerAuthentication_MutualTLS_UNSET && weaker(m, mode) {
			mode = m
		}
	}
	return mode
}

// weaker tells whether mTLS mode a admits plaintext callers where b does not, or more of
// them: DISABLE, then PERMISSIVE, then STRICT.
func weaker(a, b mtls) bool {
	rank := map[mtls]int{securityv1beta1.PeerAuthentication_MutualTLS_DISABLE: 0, securityv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE: 1, securityv1beta1.PeerAuthentication_MutualTLS_STRICT: 2}
	return rank[a] < rank[b]
}

// MTLSStrict tells whether mTLS is STRICT for a workload.
func MTLSStrict(st State, root string, w *Workload) bool {
	return MTLSMode(st, root, w) == securityv1beta1.PeerAuthentication_MutualTLS_STRICT
}
