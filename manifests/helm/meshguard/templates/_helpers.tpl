{{- define "meshguard.labels" -}}
app.kubernetes.io/name: meshguard
app.kubernetes.io/part-of: meshguard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "meshguard.selector" -}}
app.kubernetes.io/name: meshguard
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "meshguard.namespaceSelector" -}}
{{- /* meshguard's own namespace is never judged: installed in Istio's root namespace, the mesh-wide policies would go unjudged. */ -}}
{{- if eq .Release.Namespace (.Values.starterGuardrail.spec.rootNamespace | default "istio-system") }}
{{- fail (printf "install meshguard in a namespace of its own, not in Istio's root namespace %s: the webhooks never judge meshguard's own namespace" .Release.Namespace) }}
{{- end }}
matchExpressions:
- key: kubernetes.io/metadata.name
  operator: NotIn
  values:
  {{- range .Values.webhook.excludedNamespaces }}
  - {{ . }}
  {{- end }}
  - {{ .Release.Namespace }}
{{- end }}

{{- define "meshguard.webhookClient" -}}
clientConfig:
  service:
    name: meshguard
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
{{- end }}
