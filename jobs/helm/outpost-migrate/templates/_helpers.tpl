{{/* The name of this chart's objects: RELEASE-outpost-migrate, at most 63 characters. */}}
{{- define "outpost-migrate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
The name Outpost's own chart gives its ConfigMap for this release (its
"outpost.fullname" with no overrides): the release name when it contains
"outpost", else RELEASE-outpost.
*/}}
{{- define "outpost-migrate.outpostConfigMap" -}}
{{- if .Values.outpost.configMapName -}}
{{- .Values.outpost.configMapName -}}
{{- else if contains "outpost" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-outpost" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap the Job mounts at /config/outpost. */}}
{{- define "outpost-migrate.configMap" -}}
{{- if .Values.outpost.config -}}
{{- printf "%s-config" (include "outpost-migrate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- include "outpost-migrate.outpostConfigMap" . -}}
{{- end -}}
{{- end -}}

{{/* The Job's activeDeadlineSeconds: the longest run its flags allow, plus the grace to stop. */}}
{{- define "outpost-migrate.deadline" -}}
{{- $m := .Values.migrate -}}
{{- add (mul 2 (int $m.waitForSeconds)) (mul 2 (int $m.lockTimeoutSeconds)) (int $m.maxRuntimeSeconds) (int $m.terminationGracePeriodSeconds) -}}
{{- end -}}

{{- define "outpost-migrate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: migrate
{{- end -}}
