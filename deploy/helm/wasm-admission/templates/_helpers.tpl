{{/* Chart name. */}}
{{- define "wasm-admission.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of every resource; also the Service name, so the certificate's DNS names. */}}
{{- define "wasm-admission.fullname" -}}
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

{{- define "wasm-admission.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wasm-admission.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wasm-admission.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "wasm-admission.labels" -}}
helm.sh/chart: {{ include "wasm-admission.chart" . }}
{{ include "wasm-admission.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "wasm-admission.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wasm-admission.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "wasm-admission.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Where the certificate comes from: "cert-manager", "existing-secret" or "generated".
*/}}
{{- define "wasm-admission.certMode" -}}
{{- if .Values.certManager.enabled }}cert-manager
{{- else if .Values.certificates.existingSecret }}existing-secret
{{- else }}generated
{{- end }}
{{- end }}

{{/* The kubernetes.io/tls Secret mounted at /etc/wasm-admission/tls. */}}
{{- define "wasm-admission.tlsSecretName" -}}
{{- if and (not .Values.certManager.enabled) .Values.certificates.existingSecret }}
{{- .Values.certificates.existingSecret }}
{{- else }}
{{- printf "%s-tls" (include "wasm-admission.fullname" .) }}
{{- end }}
{{- end }}

{{/*
webhook.url, checked: the base URL of a webhook served outside the cluster, or "" for the
Service. The API server accepts only https URLs without user, query or fragment.
*/}}
{{- define "wasm-admission.webhookURL" -}}
{{- with .Values.webhook.url }}
{{- $u := urlParse . }}
{{- if or (ne $u.scheme "https") (not $u.hostname) $u.userinfo $u.query $u.fragment }}
{{- fail (printf "webhook.url must be an https URL with a host and no user, query or fragment (e.g. https://127.0.0.1:8443), got %q" .) }}
{{- end }}
{{- trimSuffix "/" . }}
{{- end }}
{{- end }}

{{/* The host of webhook.url when it is an IP address (the certificate's IP SAN), else "". */}}
{{- define "wasm-admission.urlIP" -}}
{{- with .Values.webhook.url }}
{{- $host := (urlParse .).hostname }}
{{- if regexMatch "^[0-9.]+$|:" $host }}{{ $host }}{{ end }}
{{- end }}
{{- end }}

{{/* The DNS names the API server uses: the Service's, and webhook.url's host when it is a name. */}}
{{- define "wasm-admission.dnsNames" -}}
{{- $svc := include "wasm-admission.fullname" . }}
{{- $ns := .Release.Namespace }}
- {{ $svc }}
- {{ $svc }}.{{ $ns }}
- {{ $svc }}.{{ $ns }}.svc
- {{ $svc }}.{{ $ns }}.svc.cluster.local
{{- if and .Values.webhook.url (not (include "wasm-admission.urlIP" .)) }}
- {{ (urlParse .Values.webhook.url).hostname }}
{{- end }}
{{- end }}

{{/*
A CA and a serving certificate (ECDSA P-256, like `wasm-admission certs`) for the Service, as
YAML with base64 values {caCert, tlsCert, tlsKey}. An existing Secret from an earlier install is
reused (Helm's lookup), so `helm upgrade` does not rotate the certificate, and the Secret and the
caBundle never disagree. `helm template` cannot look up and always generates a new pair.
Call it once per render: every call generates new keys.
*/}}
{{- define "wasm-admission.generatedCerts" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "wasm-admission.tlsSecretName" .) }}
{{- if and $secret $secret.data (index $secret.data "ca.crt") (index $secret.data "tls.crt") (index $secret.data "tls.key") }}
caCert: {{ index $secret.data "ca.crt" }}
tlsCert: {{ index $secret.data "tls.crt" }}
tlsKey: {{ index $secret.data "tls.key" }}
{{- else }}
{{- $fullname := include "wasm-admission.fullname" . }}
{{- $days := int .Values.certificates.generatedValidityDays }}
{{- $caKey := genPrivateKey "ecdsa" }}
{{- $ca := genCAWithKey (printf "%s-ca" $fullname) $days $caKey }}
{{- $dnsNames := include "wasm-admission.dnsNames" . | fromYamlArray }}
{{- $key := genPrivateKey "ecdsa" }}
{{- $ips := compact (list (include "wasm-admission.urlIP" .)) }}
{{- $cert := genSignedCertWithKey (printf "%s.%s.svc" $fullname .Release.Namespace) $ips $dnsNames $days $ca $key }}
caCert: {{ $ca.Cert | b64enc }}
tlsCert: {{ $cert.Cert | b64enc }}
tlsKey: {{ $cert.Key | b64enc }}
{{- end }}
{{- end }}

{{/* Where registryCredentials.secretName is mounted, and the file credentialsFile names. */}}
{{- define "wasm-admission.registryCredentialsDir" -}}/etc/wasm-admission/registry{{- end }}
{{- define "wasm-admission.registryCredentialsFile" -}}
{{- printf "%s/.dockerconfigjson" (include "wasm-admission.registryCredentialsDir" .) }}
{{- end }}

{{/*
The configuration file, as YAML text: configYaml when set, else config. With
registryCredentials.secretName, detection.registry.credentialsFile is set to the mounted Secret's
file (in either form); a different credentialsFile given at the same time is refused.
*/}}
{{- define "wasm-admission.configYaml" -}}
{{- $text := "" }}
{{- if .Values.configYaml }}
{{- $cfg := .Values.configYaml | fromYaml }}
{{- if hasKey $cfg "Error" }}
{{- fail (printf "configYaml is not a YAML map: %s" (get $cfg "Error")) }}
{{- end }}
{{- $text = .Values.configYaml }}
{{- else }}
{{- $text = toYaml .Values.config }}
{{- end }}
{{- with .Values.registryCredentials.secretName }}
{{- $cfg := $text | fromYaml }}
{{- $file := include "wasm-admission.registryCredentialsFile" $ }}
{{- $detection := get $cfg "detection" | default dict }}
{{- $registry := get $detection "registry" | default dict }}
{{- $given := get $registry "credentialsFile" | default "" }}
{{- if and $given (ne $given $file) }}
{{- fail (printf "registryCredentials.secretName mounts the credentials at %s: leave config.detection.registry.credentialsFile empty (it is %q)" $file $given) }}
{{- end }}
{{- $_ := set $registry "credentialsFile" $file }}
{{- $_ := set $detection "registry" $registry }}
{{- $_ := set $cfg "detection" $detection }}
{{- $text = toYaml $cfg }}
{{- end }}
{{- $text }}
{{- end }}

{{/*
Annotations or labels, every value a quoted string: `--set a.b=true` gives a boolean, which the
API server refuses in metadata. Call with the map; renders nothing for an empty one.
*/}}
{{- define "wasm-admission.stringMap" -}}
{{- range $k, $v := . }}
{{ $k | quote }}: {{ toString $v | quote }}
{{- end }}
{{- end }}

{{/*
Namespaces the webhook configurations never send: the configuration's excludedNamespaces (its
default when unset) plus the release namespace, which the server excludes by itself
(POD_NAMESPACE). Same list in both webhook configurations.
*/}}
{{- define "wasm-admission.excludedNamespaces" -}}
{{- $cfg := include "wasm-admission.configYaml" . | fromYaml }}
{{- $list := list "kube-system" "kube-public" "kube-node-lease" }}
{{- if hasKey $cfg "excludedNamespaces" }}
{{- $list = $cfg.excludedNamespaces | default list }}
{{- end }}
{{- toYaml (append $list .Release.Namespace | uniq) }}
{{- end }}

{{/*
One webhook entry; call with (dict "root" $ "name" ... "path" ... "failurePolicy" ... "caBundle" ...
"skipSelector" true|false). The skip label's objectSelector is on the mutating webhook only: the
label opts out of mutation, never of the baseline check (behaviour.md §5, the boundary), so the
validating webhook has no selector that a pod's author controls.
*/}}
{{- define "wasm-admission.webhook" -}}
{{- $root := .root }}
{{- $fp := .failurePolicy }}
{{- if not (has $fp (list "Fail" "Ignore")) }}
{{- fail (printf "webhook failurePolicy must be Fail or Ignore, got %q" $fp) }}
{{- end }}
{{- $timeout := int $root.Values.webhook.timeoutSeconds }}
{{- if or (lt $timeout 1) (gt $timeout 10) }}
{{- fail (printf "webhook.timeoutSeconds must be between 1 and 10, got %d" $timeout) }}
{{- end }}
- name: {{ .name }}
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: {{ $fp }}
  matchPolicy: Equivalent
  {{- with include "wasm-admission.matchConditions" $root }}{{ . | nindent 2 }}{{ end }}
  timeoutSeconds: {{ $timeout }}
  {{- if .reinvocationPolicy }}
  reinvocationPolicy: {{ .reinvocationPolicy }}
  {{- end }}
  clientConfig:
    {{- with include "wasm-admission.webhookURL" $root }}
    url: {{ printf "%s%s" . $.path | quote }}
    {{- else }}
    service:
      name: {{ include "wasm-admission.fullname" $root }}
      namespace: {{ $root.Release.Namespace }}
      path: {{ .path }}
      port: 443
    {{- end }}
    {{- if .caBundle }}
    caBundle: {{ .caBundle }}
    {{- end }}
  rules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["pods"]
      scope: Namespaced
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["UPDATE"]
      resources: ["pods/ephemeralcontainers"]
      scope: Namespaced
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["deployments", "statefulsets", "daemonsets", "replicasets"]
      scope: Namespaced
    - apiGroups: ["batch"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["jobs", "cronjobs"]
      scope: Namespaced
  namespaceSelector:
    matchLabels:
      wasm-admission.io/inject: enabled
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: NotIn
        values:
          {{- include "wasm-admission.excludedNamespaces" $root | nindent 10 }}
  {{- if .skipSelector }}
  objectSelector:
    matchExpressions:
      - key: wasm-admission.io/skip
        operator: NotIn
        values: ["true"]
  {{- end }}
{{- end }}

{{/*
"true" when the chart runs the webhook (mode webhook or both), "" in mode policies. Fails on an
unknown mode.
*/}}
{{- define "wasm-admission.runsWebhook" -}}
{{- if not (has .Values.mode (list "webhook" "policies" "both")) }}
{{- fail (printf "mode must be webhook, policies or both, got %q" .Values.mode) }}
{{- end }}
{{- if ne .Values.mode "policies" }}true{{ end }}
{{- end }}
