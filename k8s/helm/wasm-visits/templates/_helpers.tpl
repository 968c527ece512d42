{{/* Labels on every object. Pod selectors use only the fixed app.kubernetes.io
labels below so the Ingress/HPA/NetworkPolicies match both editions. */}}
{{- define "wasm-visits.labels" -}}
app.kubernetes.io/part-of: wasm-visits
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "wasm-visits.secretName" -}}
{{ .Values.mongo.auth.existingSecret | default "wasm-visits-mongodb" }}
{{- end }}

{{- define "wasm-visits.wasmImage" -}}
{{ .Values.images.wasm.repository }}:{{ .Values.images.wasm.tag | default .Values.version }}
{{- end }}

{{- define "wasm-visits.nativeImage" -}}
{{ .Values.images.native.repository }}:{{ .Values.images.native.tag | default .Values.version }}
{{- end }}

{{/* MongoDB seeds of webdb, as a list: IP literals in both editions (no DNS
inside the Wasm sandbox; the native binary parses the same settings), from the
Service env vars the kubelet expands. */}}
{{- define "wasm-visits.mongoSeeds" -}}
{{- if eq .Values.mongo.mode "replicaset" -}}
["$(MONGO_0_SERVICE_HOST):27017", "$(MONGO_1_SERVICE_HOST):27017", "$(MONGO_2_SERVICE_HOST):27017"]
{{- else -}}
["$(MONGODB_SERVICE_HOST):27017", "$(MONGODB_SERVICE_HOST):27017", "$(MONGODB_SERVICE_HOST):27017"]
{{- end -}}
{{- end }}

{{/* The MongoDB URI (without credentials) of the admin Jobs. */}}
{{- define "wasm-visits.mongoAdminUri" -}}
{{- if eq .Values.mongo.mode "replicaset" -}}
mongodb://mongo-0.mongo:27017,mongo-1.mongo:27017,mongo-2.mongo:27017/?replicaSet=rs0&readPreference=secondaryPreferred
{{- else -}}
mongodb://mongodb:27017/
{{- end -}}
{{- end }}

{{/* Render-time validation: `helm install/upgrade/template` stop here with a
message. The pre-install/pre-upgrade Job (hooks/config-check.yaml) checks the
same settings in the cluster. values.schema.json checks the types. */}}
{{- define "wasm-visits.validate" -}}
{{- $v := .Values -}}
{{- if not (has $v.edition (list "wasm" "container")) -}}
{{- fail (printf "edition must be wasm or container, not %q" $v.edition) -}}
{{- end -}}
{{- if not (has $v.mongo.mode (list "standalone" "replicaset")) -}}
{{- fail (printf "mongo.mode must be standalone or replicaset, not %q" $v.mongo.mode) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" $v.domain) -}}
{{- fail (printf "domain %q is not a valid DNS name" $v.domain) -}}
{{- end -}}
{{- if lt (int $v.replicas) 1 -}}
{{- fail "replicas must be at least 1" -}}
{{- end -}}
{{- if and $v.autoscaling.enabled (lt (int $v.autoscaling.maxReplicas) (int $v.replicas)) -}}
{{- fail "autoscaling.maxReplicas must be >= replicas" -}}
{{- end -}}
{{- if or (lt (int $v.records.limit) 1) (gt (int $v.records.limit) 100) -}}
{{- fail "records.limit must be within 1-100" -}}
{{- end -}}
{{- if or (lt (int $v.mongo.timeoutMs) 1) (gt (int $v.mongo.timeoutMs) 60000) -}}
{{- fail "mongo.timeoutMs must be within 1-60000" -}}
{{- end -}}
{{- if not (has $v.counter.backend (list "redis" "embedded")) -}}
{{- fail "counter.backend must be redis or embedded" -}}
{{- end -}}
{{- if not $v.mongo.auth.existingSecret -}}
{{- if or (not $v.mongo.auth.username) (not $v.mongo.auth.password) (not $v.mongo.auth.rootUsername) (not $v.mongo.auth.rootPassword) -}}
{{- fail "mongo.auth: username, password, rootUsername and rootPassword are required (or set mongo.auth.existingSecret)" -}}
{{- end -}}
{{- $kf := $v.mongo.auth.keyfile | toString -}}
{{- if and (eq $v.mongo.mode "replicaset") (or (lt (len $kf) 6) (gt (len $kf) 1024) (not (regexMatch "^[A-Za-z0-9+/=]+$" $kf))) -}}
{{- fail "mongo.auth.keyfile must be 6-1024 base64 characters in replicaset mode" -}}
{{- end -}}
{{- end -}}
{{- if le (int $v.rollout.terminationGracePeriodSeconds) (add (int $v.rollout.preStopSleepSeconds) 10) -}}
{{- fail "rollout.terminationGracePeriodSeconds must exceed rollout.preStopSleepSeconds + 10 (visits-native's graceful shutdown)" -}}
{{- end -}}
{{- if and (eq $v.edition "wasm") (not $v.spin.runtimeClassName) -}}
{{- fail "spin.runtimeClassName is required for the wasm edition" -}}
{{- end -}}
{{- end }}

{{/* Pod-level and container-level security settings. */}}
{{- define "wasm-visits.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{- define "wasm-visits.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end }}
