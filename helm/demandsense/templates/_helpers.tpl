{{/* Chart name, overridable; truncated to 63 characters, the DNS label limit. */}}
{{- define "demandsense.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources. Truncated to 52 characters, not 63: the StatefulSet controller
adds a `controller-revision-hash` label `<name>-<10-char hash>` that must fit in a 63-character label
value, and `<name>-headless` / `<name>-metrics` must stay valid Service names.
*/}}
{{- define "demandsense.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "demandsense.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Namespace of every resource: namespaceOverride or the release namespace. */}}
{{- define "demandsense.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels; helm.sh/chart and the version change on upgrade, so they stay out of selectors. */}}
{{- define "demandsense.labels" -}}
helm.sh/chart: {{ include "demandsense.chart" . }}
{{ include "demandsense.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: demandsense
{{- end }}

{{/* Selector labels: name and instance only (immutable in StatefulSet selectors). */}}
{{- define "demandsense.selectorLabels" -}}
app.kubernetes.io/name: {{ include "demandsense.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector of the processor pods: adds the component so the helm test pod is never selected. */}}
{{- define "demandsense.processorSelectorLabels" -}}
{{ include "demandsense.selectorLabels" . }}
app.kubernetes.io/component: processor
{{- end }}

{{/* ServiceAccount name: the full name when the chart creates it, `default` otherwise. */}}
{{- define "demandsense.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "demandsense.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: a digest pins it; otherwise the tag, defaulting to the chart appVersion. */}}
{{- define "demandsense.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Headless Service giving every process a stable DNS name for the Bytewax cluster. */}}
{{- define "demandsense.headlessServiceName" -}}
{{- printf "%s-headless" (include "demandsense.fullname" .) }}
{{- end }}

{{/* Metrics Service; its name is the Prometheus `job` label under a ServiceMonitor. */}}
{{- define "demandsense.metricsServiceName" -}}
{{- printf "%s-metrics" (include "demandsense.fullname" .) }}
{{- end }}

{{/* Name of the ConfigMap holding the policy file. */}}
{{- define "demandsense.configMapName" -}}
{{- printf "%s-config" (include "demandsense.fullname" .) }}
{{- end }}

{{/*
DEMANDSENSE_ADDRESSES: `host:port` of every process in process-id order, separated by `;`.
Pod i of the StatefulSet is `<fullname>-i`, resolvable as `<fullname>-i.<headless>.<ns>.svc.<domain>`.
*/}}
{{- define "demandsense.clusterAddresses" -}}
{{- $fullname := include "demandsense.fullname" . }}
{{- $headless := include "demandsense.headlessServiceName" . }}
{{- $ns := include "demandsense.namespace" . }}
{{- $addresses := list }}
{{- range $i := until (int .Values.replicas) }}
{{- $addresses = append $addresses (printf "%s-%d.%s.%s.svc.%s:%d" $fullname $i $headless $ns $.Values.clusterDomain (int $.Values.cluster.port)) }}
{{- end }}
{{- join ";" $addresses }}
{{- end }}

{{/* Kafka security.protocol, derived from the two switches so they cannot disagree. */}}
{{- define "demandsense.kafkaSecurityProtocol" -}}
{{- if and .Values.kafka.sasl.enabled .Values.kafka.tls.enabled }}SASL_SSL
{{- else if .Values.kafka.sasl.enabled }}SASL_PLAINTEXT
{{- else if .Values.kafka.tls.enabled }}SSL
{{- else }}PLAINTEXT
{{- end }}
{{- end }}

{{/* Where Secret-backed files are mounted in the container. */}}
{{- define "demandsense.kafkaTlsDir" -}}/etc/demandsense/kafka-tls{{- end }}
{{- define "demandsense.redisTlsDir" -}}/etc/demandsense/redis-tls{{- end }}
{{- define "demandsense.recoveryDir" -}}/var/lib/demandsense{{- end }}
{{- define "demandsense.configDir" -}}/etc/demandsense/config{{- end }}

{{/* PromQL matchers selecting this release's series. */}}
{{- define "demandsense.promSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else }}
{{- printf "namespace=%q, job=%q" (include "demandsense.namespace" .) (include "demandsense.metricsServiceName" .) }}
{{- end }}
{{- end }}

{{/*
Checks values the schema cannot express; fails the render with a message naming the key.
Credentials never come from values: only Secret names and keys do.
*/}}
{{- define "demandsense.validate" -}}
{{- $k := .Values.kafka }}
{{- if and $k.sasl.enabled (not $k.sasl.existingSecret) }}
{{- fail "kafka.sasl.enabled needs kafka.sasl.existingSecret: the name of a Secret holding the SASL password (key kafka.sasl.passwordKey)" }}
{{- end }}
{{- if and $k.sasl.enabled (not $k.sasl.username) (not $k.sasl.usernameKey) }}
{{- fail "kafka.sasl.enabled needs kafka.sasl.username or kafka.sasl.usernameKey (the username's key in kafka.sasl.existingSecret)" }}
{{- end }}
{{- if and $k.tls.mtls (not $k.tls.enabled) }}
{{- fail "kafka.tls.mtls needs kafka.tls.enabled" }}
{{- end }}
{{- if and $k.tls.mtls (not $k.tls.existingSecret) }}
{{- fail "kafka.tls.mtls needs kafka.tls.existingSecret: a Secret with the client certificate (kafka.tls.certKey) and key (kafka.tls.keyKey)" }}
{{- end }}
{{- if and $k.tls.existingSecret (not $k.tls.enabled) }}
{{- fail "kafka.tls.existingSecret is set but kafka.tls.enabled is false" }}
{{- end }}
{{- if regexMatch "://[^/]*@" $k.schemaRegistryUrl }}
{{- fail "kafka.schemaRegistryUrl must not carry credentials" }}
{{- end }}
{{- $r := .Values.redis }}
{{- if regexMatch "://[^/]*@" $r.url }}
{{- fail "redis.url must not carry credentials: use redis.auth.existingSecret" }}
{{- end }}
{{- if and $r.auth.enabled (not $r.auth.existingSecret) }}
{{- fail "redis.auth.enabled needs redis.auth.existingSecret: the name of a Secret holding the Redis password (key redis.auth.passwordKey)" }}
{{- end }}
{{- if and $r.auth.enabled (not $r.url) }}
{{- fail "redis.auth.enabled needs redis.url" }}
{{- end }}
{{- if and $r.tls.existingSecret (not (hasPrefix "rediss://" $r.url)) }}
{{- fail "redis.tls.existingSecret needs a rediss:// redis.url" }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if and (hasKey . "value") (regexMatch "(?i)(passw|secret|token|credential)" .name) }}
{{- fail (printf "extraEnv %s: put secrets in valueFrom.secretKeyRef, not in a plain value" .name) }}
{{- end }}
{{- end }}
{{- end }}
