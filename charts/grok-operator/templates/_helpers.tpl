{{/*
Standard names and labels. Every template takes its names from here so that a nameOverride or
fullnameOverride changes them all at once.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "grok-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name used as the prefix of every object: fullnameOverride, else RELEASE-NAME, else RELEASE when
it already contains the chart name. Truncated to 52 characters so suffixes fit the 63-character limit.
*/}}
{{- define "grok-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label value: name-version. */}}
{{- define "grok-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pods; never change them after the first release (immutable selector). */}}
{{- define "grok-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "grok-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels on every object the chart creates. */}}
{{- define "grok-operator.labels" -}}
helm.sh/chart: {{ include "grok-operator.chart" . }}
{{ include "grok-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: grok-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* metadata.annotations block for every object (empty when there are none). */}}
{{- define "grok-operator.annotations" -}}
{{- with .Values.commonAnnotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* The operator's ServiceAccount name. */}}
{{- define "grok-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "grok-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image reference: repository@digest when a digest is given, else repository:tag. */}}
{{- define "grok-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* True ("true") when the operator serves every namespace. */}}
{{- define "grok-operator.clusterWide" -}}
{{- if not .Values.watch.namespaces }}true{{- end }}
{{- end }}

{{/* The Service's port for /metrics and /readyz: metrics.service.port when metrics.enabled. */}}
{{- define "grok-operator.metricsServicePort" -}}
{{- ternary .Values.metrics.service.port .Values.metrics.port .Values.metrics.enabled }}
{{- end }}

{{/*
The `grok-operator run` arguments. The demo and the integration tests read them back from the rendered
Deployment and start the operator in-process with exactly these, so what is tested is what is deployed.
*/}}
{{- define "grok-operator.args" -}}
- run
{{- if .Values.watch.namespaces }}
{{- range .Values.watch.namespaces }}
- --namespace={{ . }}
{{- end }}
{{- else }}
- --all-namespaces
{{- end }}
{{- if .Values.peering.enabled }}
- --peering={{ .Values.peering.name }}
{{- /* Distinct per pod: kopf pauses every operator when two share the highest priority. */}}
- --priority=random
- --peering-lifetime={{ .Values.peering.lifetimeSeconds }}
{{- else }}
- --standalone
{{- end }}
- --log-level={{ upper .Values.logging.level }}
- --log-format={{ .Values.logging.format }}
- --liveness=http://0.0.0.0:{{ .Values.health.port }}/healthz
- --metrics-address=0.0.0.0:{{ .Values.metrics.port }}
- --create-rate={{ .Values.createLimits.rate }}
- --create-burst={{ .Values.createLimits.burst }}
- --deployment-create-rate={{ .Values.createLimits.perDeploymentRate }}
- --deployment-create-burst={{ .Values.createLimits.perDeploymentBurst }}
{{- end }}

{{/* Fail early, with the fix, on value combinations the schema cannot express. */}}
{{- define "grok-operator.validate" -}}
{{- if eq (int .Values.health.port) (int .Values.metrics.port) }}
{{- fail (printf "health.port and metrics.port are both %d: the liveness endpoint and /metrics + /readyz need ports of their own; change one" (int .Values.health.port)) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.enabled) }}
{{- fail "replicaCount > 1 needs peering.enabled=true: without kopf peering every operator pod would act on the same GrokDeployments at once" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled=true needs metrics.enabled=true (the ServiceMonitor selects the metrics Service)" }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) .Values.rbac.create }}
{{- fail "serviceAccount.create=false with rbac.create=true needs serviceAccount.name: name the existing ServiceAccount to bind the operator's Roles to" }}
{{- end }}
{{- end }}
