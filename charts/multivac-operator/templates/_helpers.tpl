{{/*
The name of every object of the release: <release>-multivac-operator, or the
release name alone when it already says multivac-operator.
*/}}
{{- define "multivac-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Selector labels. `app.kubernetes.io/name: multivac-operator` is fixed (no
nameOverride): the NetworkPolicies the operator writes for Redis and MongoDB
admit the operator's pods by exactly this label.
*/}}
{{- define "multivac-operator.selectorLabels" -}}
app.kubernetes.io/name: multivac-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "multivac-operator.labels" -}}
{{ include "multivac-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: multivac
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "multivac-operator.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "multivac-operator.fullname" .) }}
{{- end }}

{{- define "multivac-operator.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}
