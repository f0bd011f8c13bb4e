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
