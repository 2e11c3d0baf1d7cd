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

{{/*
The app image of a MultiVac without spec.image: by default this release's.
*/}}
{{- define "multivac-operator.appImage" -}}
{{- if .Values.appImage.digest -}}
{{ .Values.appImage.repository }}@{{ .Values.appImage.digest }}
{{- else -}}
{{ .Values.appImage.repository }}:{{ .Values.appImage.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/*
The namespaces the operand pods run in: watchNamespace, else the
podMonitor's list, else all (empty).
*/}}
{{- define "multivac-operator.operandNamespaces" -}}
{{- if .Values.watchNamespace -}}
{{ list .Values.watchNamespace | toJson }}
{{- else -}}
{{ .Values.podMonitor.namespaces | default list | toJson }}
{{- end -}}
{{- end }}

{{/*
The operator's rules, shared by the ClusterRole (all namespaces) and the Role
(watchNamespace mode). Keep equal to config/rbac/role.yaml: hack/lint.sh
compares the rendered rules.
*/}}
{{- define "multivac-operator.rules" -}}
# The MultiVacs it reconciles: watched, never written...
- apiGroups: ["multivac.io"]
  resources: ["multivacs"]
  verbs: ["get", "list", "watch"]
# ...except their status, by server-side apply (reconciler and scaler).
- apiGroups: ["multivac.io"]
  resources: ["multivacs/status"]
  verbs: ["patch"]
# Children written by server-side apply (patch, and create when new), watched
# through .owns(); Deployments, Services, NetworkPolicies, the PDB and the
# Ingress are deleted when the spec no longer wants them (external store, 1
# server replica, no ingress), ServiceAccounts when named as by the previous
# release. Only objects the MultiVac controls are ever changed or deleted. The scaler
# applies the worker Deployment's spec.replicas.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies", "ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Never deleted: PVCs keep the data when a store becomes external or the
# MultiVac is deleted (spec.retention: Retain).
- apiGroups: [""]
  resources: ["configmaps", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Secrets are read one by one, never listed or watched: the user's Secrets
# the spec names (API token, external store URLs and CAs: their content is
# hashed into the pod templates) and the generated `<name>-credentials`, which the
# reconciler creates when no data volume exists and patches only to rotate
# it or to settle its labels, owner annotation and ownerReference as
# spec.retention asks; the scaler reads the Redis URL (and its CA). Never deleted.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
# kube-runtime's Recorder (events.k8s.io/v1) creates events and patches
# repeated ones.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
