{{/*
The operator's API calls as RBAC rules, one place for both the ClusterRole and the per-namespace Roles.
Keep in step with operator/grok_operator's API module; the RBAC test fails on any rule no call uses (but for the rare paths it names, RARE_PATH_GRANTS).
*/}}

{{/* Rules on namespaced objects in the watched namespaces. */}}
{{- define "grok-operator.rules.namespaced" -}}
# The GrokDeployments: kopf lists and watches them and patches its finalizer onto them; a
# reconcile pass reads the watch's copy, and an object being deleted is read afresh (get) and
# loses the finalizer through the operator too (kopf cannot once the CRD is going).
- apiGroups: ["serving.grok.dev"]
  resources: ["grokdeployments"]
  verbs: ["get", "list", "watch", "patch"]
# Status written by the reconcile (a merge patch of the status subresource).
- apiGroups: ["serving.grok.dev"]
  resources: ["grokdeployments/status"]
  verbs: ["patch"]
# Children are written by server-side apply: a PATCH, which the apiserver also authorizes as
# `create` when the object does not exist yet. One StatefulSet per replica group; kopf watches
# them for changes; scaling down and whole-group recreation delete them.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# A headless Service per group (deleted with its group) and the client Service; kopf lists and
# watches them into the operator's in-memory cache (a pass never lists them).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# The worker config; one per GrokDeployment, removed by the garbage collector with it. Cached
# from kopf's watch like the Services.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "watch", "create", "patch"]
# Observed pod state (readiness, restarts, scheduling failures); kopf watches them for changes.
# Whole-group recreation and scale-down delete a group's pods.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "delete"]
# Secrets, by name only (no list/watch: the operator never sees other Secrets' contents in bulk):
# get checks the Secrets spec.serving.tls/auth name and each group's step key; create makes a
# group's step key once (a POST never overwrites). The garbage collector removes them.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create"]
# A NetworkPolicy per replica group (server-side apply; the watch feeds the cache), deleted with its group or when
# spec.networkPolicy.enabled is false.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# The operator's own Events (refused spec, group recreated); kopf's log-to-Event posting is off.
# Listed: the StatefulSet controller's FailedCreate Events, while a group is short of pods (their
# message, e.g. a missing ServiceAccount, goes into the status).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list", "create"]
{{- if .Values.kueue.enabled }}
# Kueue integration: the Workload of a replica group that waits for admission, read (by name) for
# Kueue's reason, which the status reports. Only while a group's pods carry Kueue's gate.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["get"]
{{- end }}
{{- if and .Values.peering.enabled .Values.watch.namespaces }}
# kopf peering of namespaced operators: keep-alives in a KopfPeering in each watched namespace.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* Rules kopf needs at cluster scope, whatever the watched namespaces. */}}
{{- define "grok-operator.rules.cluster" -}}
# kopf's resource scanning: notices the GrokDeployment CRD appearing or changing; the operator
# watches it being deleted (it then releases every GrokDeployment, see docs/operator.md).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.watch.namespaces }}
# kopf of a namespaced operator lists and watches namespaces to match its --namespace patterns
# (without it kopf retries for ~35 s at startup, then falls back to assuming they exist).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- if and .Values.peering.enabled (not .Values.watch.namespaces) }}
# kopf peering of a cluster-wide operator: keep-alives in a ClusterKopfPeering.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- end }}
