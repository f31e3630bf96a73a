{{/* The chart's name, truncated to 63 characters (a DNS label). */}}
{{- define "sendit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: every object's name starts with it. */}}
{{- define "sendit.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sendit.operatorName" -}}
{{- printf "%s-operator" (include "sendit.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sendit.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sendit.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sendit
{{- end }}

{{- define "sendit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sendit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "sendit.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sendit.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository[:tag][@digest]; the tag defaults to the chart's appVersion. */}}
{{- define "sendit.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* Where the worker ServiceAccount goes: its own list, the watched namespaces, or the release's. */}}
{{- define "sendit.workerNamespaces" -}}
{{- $list := .Values.workerServiceAccount.namespaces | default .Values.operator.watchNamespaces | default (list .Release.Namespace) }}
{{- toJson (uniq $list) }}
{{- end }}

{{/* The Secret names the operator may read, when rbac.restrictSecrets is on. */}}
{{- define "sendit.secretNames" -}}
{{- $names := list }}
{{- range $ref := list .Values.secrets.pseudonymKey .Values.secrets.googleCredentials .Values.secrets.identifierToken }}
{{- if $ref.name }}{{ $names = append $names $ref.name }}{{ end }}
{{- end }}
{{- toJson (concat $names .Values.secrets.extraNames | uniq) }}
{{- end }}

{{/*
The operator's rules inside a namespace it watches. Every verb is one the operator calls, and
the Roles it makes for workers and watch scans grant only verbs it holds itself (RBAC forbids
granting more without escalate/bind, which it does not have).
*/}}
{{- define "sendit.namespacedRules" -}}
- apiGroups: [sendit.dev]
  resources: [senditbatches]
  # create: the SenditWatch scan's Role grants it, so the operator must hold it.
  verbs: [get, list, watch, patch, create]
- apiGroups: [sendit.dev]
  resources: [senditwatches]
  verbs: [get, list, watch, patch]
- apiGroups: [sendit.dev]
  resources: [senditbatches/status, senditwatches/status]
  verbs: [get, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, create, patch]
# serviceaccounts for the workers; services for the PACS's storage commitment reports.
- apiGroups: [""]
  resources: [serviceaccounts, services]
  verbs: [get, create, patch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, create, patch]
- apiGroups: [""]
  resources: [configmaps, persistentvolumeclaims]
  verbs: [get]
{{- $secrets := include "sendit.secretNames" . | fromJsonArray }}
{{- if and .Values.rbac.restrictSecrets $secrets }}
- apiGroups: [""]
  resources: [secrets]
  resourceNames: {{ toJson $secrets }}
  verbs: [get]
{{- else }}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
# Events: posted on phase changes; listed (the batches' only) by the status page.
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, list]
{{- end }}

{{/*
The policy (values `policy`) as JSON, each key a list: the worker images (the chart's own, then
policy.images), the ServiceAccounts a batch may name (the chart's worker account when it makes
one, then policy.serviceAccounts), the source volume kinds and the node folders.
*/}}
{{- define "sendit.policy" -}}
{{- $p := .Values.policy }}
{{- $worker := include "sendit.image" (dict "root" . "image" .Values.workerImage) }}
{{- $accounts := $p.serviceAccounts }}
{{- if .Values.workerServiceAccount.create }}
{{- $accounts = prepend $accounts .Values.workerServiceAccount.name }}
{{- end }}
{{- toJson (dict
  "images" (prepend $p.images $worker | uniq)
  "serviceAccounts" (uniq $accounts)
  "sourceVolumes" $p.sourceVolumes
  "hostPathPrefixes" $p.hostPathPrefixes
  "localPathPrefixes" $p.localPathPrefixes) }}
{{- end }}

{{- define "sendit.policyName" -}}
{{- printf "%s-policy" (include "sendit.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
