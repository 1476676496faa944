{{/* vim: set filetype=mustache: */}}

{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "okta-ldap-hook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: <release>-<name>, or <release> when it already contains the name. */}}
{{- define "okta-ldap-hook.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "okta-ldap-hook.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "okta-ldap-hook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: immutable on a Deployment, so only name and instance. */}}
{{- define "okta-ldap-hook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "okta-ldap-hook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "okta-ldap-hook.labels" -}}
helm.sh/chart: {{ include "okta-ldap-hook.chart" . }}
{{ include "okta-ldap-hook.selectorLabels" . }}
app.kubernetes.io/version: {{ include "okta-ldap-hook.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: hook
app.kubernetes.io/part-of: okta-ldap-hook
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata.annotations content shared by every object (may be empty). */}}
{{- define "okta-ldap-hook.commonAnnotations" -}}
{{- with .Values.commonAnnotations }}
{{- toYaml . }}
{{- end }}
{{- end -}}

{{- define "okta-ldap-hook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "okta-ldap-hook.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image tag (appVersion by default); only the part before a skaffold "@digest" suffix. */}}
{{- define "okta-ldap-hook.imageTag" -}}
{{- (split "@" (default .Chart.AppVersion .Values.image.tag))._0 -}}
{{- end -}}

{{/* repository@digest when a digest is set, else repository:tag. */}}
{{- define "okta-ldap-hook.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* ----------------------------------------------------------------------------- secrets */}}

{{- define "okta-ldap-hook.secretName" -}}
{{- default (include "okta-ldap-hook.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{/* Where the Secret's keys are mounted as files (the config points at them). */}}
{{- define "okta-ldap-hook.secretDir" -}}
/var/run/secrets/okta-ldap-hook
{{- end -}}

{{/* JSON list of the Secret keys that each hold one accepted Okta secret. */}}
{{- define "okta-ldap-hook.hookSecretKeys" -}}
{{- $keys := list -}}
{{- if .Values.secret.existingSecret -}}
{{- $keys = .Values.secret.existingSecretKeys.hookSecrets -}}
{{- else if .Values.secret.hookSecrets -}}
{{- range $i, $_ := .Values.secret.hookSecrets -}}
{{- $keys = append $keys (printf "hook-secret-%d" (add1 $i)) -}}
{{- end -}}
{{- else -}}
{{- $keys = list "hook-secret-1" -}}
{{- end -}}
{{- toJson $keys -}}
{{- end -}}

{{/* "true" when the directory is bound with a DN, so a bind password is mounted (one-directory form). */}}
{{- define "okta-ldap-hook.bindsWithPassword" -}}
{{- if and .Values.config.directory .Values.config.directory.bind_dn -}}true{{- end -}}
{{- end -}}

{{/* The configured directories as a JSON list of {name, key, config}: `key` is where its values live
(for messages). The one-directory form is one entry named "" with key config.directory. Sorted by name. */}}
{{- define "okta-ldap-hook.directoryList" -}}
{{- $list := list -}}
{{- if .Values.config.directories -}}
{{- range $name, $directory := .Values.config.directories -}}
{{- if $directory -}}
{{- $list = append $list (dict "name" $name "key" (printf "config.directories.%s" $name) "config" $directory) -}}
{{- end -}}
{{- end -}}
{{- else if .Values.config.directory -}}
{{- $list = list (dict "name" "" "key" "config.directory" "config" .Values.config.directory) -}}
{{- end -}}
{{- toJson $list -}}
{{- end -}}

{{/* config.directories: JSON list of {name, key, path} for each directory bound with a DN: its bind
password is Secret key `key`, mounted as file `path` (bind-password-<name>) of the secret directory. */}}
{{- define "okta-ldap-hook.directoryBindPasswords" -}}
{{- $entries := list -}}
{{- range $name, $directory := .Values.config.directories -}}
{{- if and $directory $directory.bind_dn -}}
{{- $path := printf "bind-password-%s" $name -}}
{{- $key := $path -}}
{{- if $.Values.secret.existingSecret -}}
{{- $key = index (default (dict) $.Values.secret.existingSecretKeys.directoryBindPasswords) $name | default "" -}}
{{- end -}}
{{- $entries = append $entries (dict "name" $name "key" $key "path" $path) -}}
{{- end -}}
{{- end -}}
{{- toJson $entries -}}
{{- end -}}

{{- define "okta-ldap-hook.bindPasswordKey" -}}
{{- if .Values.secret.existingSecret -}}
{{- .Values.secret.existingSecretKeys.bindPassword -}}
{{- else -}}
bind-password
{{- end -}}
{{- end -}}

{{/* The generated Okta secret: kept from the live Secret on upgrades, random on install. */}}
{{- define "okta-ldap-hook.generatedHookSecret" -}}
{{- $existing := lookup "v1" "Secret" (include "okta-ldap-hook.namespace" .) (include "okta-ldap-hook.fullname" .) -}}
{{- if and $existing $existing.data (index $existing.data "hook-secret-1") -}}
{{- index $existing.data "hook-secret-1" -}}
{{- else -}}
{{- randAlphaNum 40 | b64enc -}}
{{- end -}}
{{- end -}}

{{/* ----------------------------------------------------------------------------- LDAP CA */}}

{{- define "okta-ldap-hook.caFile" -}}
{{- if or .Values.ldapCa.secretName .Values.ldapCa.configMapName -}}
/etc/ssl/okta-ldap-hook/ca.crt
{{- end -}}
{{- end -}}

{{/* config.directories: JSON object name -> CA file of each directory that has one: its own
ldapCa.directories.<name> at <name>/ca.crt, else the shared ldapCa bundle (when set). */}}
{{- define "okta-ldap-hook.directoryCaFiles" -}}
{{- $files := dict -}}
{{- $own := default (dict) .Values.ldapCa.directories -}}
{{- $shared := include "okta-ldap-hook.caFile" . -}}
{{- range $name, $directory := .Values.config.directories -}}
{{- if and $directory (index $own $name) -}}
{{- $_ := set $files $name (printf "/etc/ssl/okta-ldap-hook/%s/ca.crt" $name) -}}
{{- else if and $directory $shared -}}
{{- $_ := set $files $name $shared -}}
{{- end -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}

{{/* config.directories: "true" when some CA bundle is mounted (one projected volume for all of them). */}}
{{- define "okta-ldap-hook.directoryCaVolume" -}}
{{- if .Values.config.directories -}}
{{- if or (include "okta-ldap-hook.caFile" .) (include "okta-ldap-hook.directoryCaFiles" . | fromJson) -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* ----------------------------------------------------------------------------- config */}}

{{/* The service's config.yaml: values.config plus the parts the chart owns. */}}
{{- define "okta-ldap-hook.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $secretDir := include "okta-ldap-hook.secretDir" . -}}
{{- $files := list -}}
{{- range (include "okta-ldap-hook.hookSecretKeys" . | fromJsonArray) -}}
{{- $files = append $files (printf "%s/%s" $secretDir .) -}}
{{- end -}}
{{- $_ := set $cfg "server" (dict "host" "0.0.0.0" "hook_port" (int .Values.containerPorts.hook) "ops_port" (int .Values.containerPorts.ops)) -}}
{{- $auth := dict "header" .Values.okta.authHeader "secret_files" $files -}}
{{- with .Values.okta.oauth -}}
{{- if .issuer -}}
{{- $oauth := dict "issuer" .issuer "audience" .audience "scopes" .scopes "leeway_seconds" .leewaySeconds -}}
{{- if .clientIds -}}{{- $_ := set $oauth "client_ids" .clientIds -}}{{- end -}}
{{- if .jwksUri -}}{{- $_ := set $oauth "jwks_uri" .jwksUri -}}{{- end -}}
{{- $_ := set $auth "oauth" $oauth -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "auth" $auth -}}
{{- if $cfg.directories -}}
{{- $_ := unset $cfg "directory" -}}
{{- range $name, $directory := $cfg.directories -}}
{{- if not $directory -}}{{- $_ := unset $cfg.directories $name -}}{{- end -}}
{{- end -}}
{{- range (include "okta-ldap-hook.directoryBindPasswords" . | fromJsonArray) -}}
{{- $_ := set (index $cfg.directories .name) "bind_password_file" (printf "%s/%s" $secretDir .path) -}}
{{- end -}}
{{- range $name, $file := (include "okta-ldap-hook.directoryCaFiles" . | fromJson) -}}
{{- $_ := set (index $cfg.directories $name) "ca_file" $file -}}
{{- end -}}
{{- else -}}
{{- $directory := $cfg.directory -}}
{{- if include "okta-ldap-hook.bindsWithPassword" . -}}
{{- $_ := set $directory "bind_password_file" (printf "%s/%s" $secretDir (include "okta-ldap-hook.bindPasswordKey" .)) -}}
{{- end -}}
{{- with include "okta-ldap-hook.caFile" . -}}
{{- $_ := set $directory "ca_file" . -}}
{{- end -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Hook types configured in config.hooks, as a JSON list of {type, path} (path as served). */}}
{{- define "okta-ldap-hook.hookPaths" -}}
{{- $paths := list -}}
{{- range $type := list "registration" "token" "saml" "user_import" "password_import" -}}
{{- if not (kindIs "invalid" (index $.Values.config.hooks $type)) -}}
{{- $paths = append $paths (dict "type" $type "path" (printf "/hooks/%s" (replace "_" "-" $type))) -}}
{{- end -}}
{{- end -}}
{{- toJson $paths -}}
{{- end -}}

{{/* ----------------------------------------------------------------------------- network */}}

{{/* JSON list of the TCP ports of every directory's urls (config.directory or each of
config.directories), 389 for ldap://, 636 for ldaps:// by default; in order of first use. */}}
{{- define "okta-ldap-hook.ldapPorts" -}}
{{- $ports := list -}}
{{- range (include "okta-ldap-hook.directoryList" . | fromJsonArray) -}}
{{- range .config.urls -}}
{{- $url := urlParse . -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" -}}
{{- if not $port -}}
{{- $port = ternary "636" "389" (eq $url.scheme "ldaps") -}}
{{- end -}}
{{- $ports = append $ports (int $port) -}}
{{- end -}}
{{- end -}}
{{- toJson ($ports | uniq) -}}
{{- end -}}

{{/* JSON list of the TCP ports of okta.oauth.issuer and jwksUri (443 by default); empty without OAuth. */}}
{{- define "okta-ldap-hook.oauthPorts" -}}
{{- $ports := list -}}
{{- $oauth := .Values.okta.oauth -}}
{{- if $oauth.issuer -}}
{{- range (compact (list $oauth.issuer $oauth.jwksUri)) -}}
{{- $url := urlParse . -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" | default "443" -}}
{{- $ports = append $ports (int $port) -}}
{{- end -}}
{{- end -}}
{{- toJson ($ports | uniq) -}}
{{- end -}}

{{/* Port of telemetry.otlpEndpoint (default 4318 for http, 443 for https). */}}
{{- define "okta-ldap-hook.otlpPort" -}}
{{- with .Values.telemetry.otlpEndpoint -}}
{{- $url := urlParse . -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" -}}
{{- if $port -}}{{ $port }}{{- else if eq $url.scheme "https" -}}443{{- else -}}4318{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of the helm test Pod: not matched by the Deployment/Service selectors. */}}
{{- define "okta-ldap-hook.testSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-test" (include "okta-ldap-hook.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Fail early on inconsistent values (the schema cannot express these). */}}
{{- define "okta-ldap-hook.validate" -}}
{{- if and .Values.ldapCa.secretName .Values.ldapCa.configMapName -}}
{{- fail "ldapCa: set secretName or configMapName, not both" -}}
{{- end -}}
{{- if and .Values.config.directory .Values.config.directories -}}
{{- fail "config.directory and config.directories are both set: use one form. With config.directories, set config.directory: null (the chart's default values set config.directory)" -}}
{{- end -}}
{{- $directories := include "okta-ldap-hook.directoryList" . | fromJsonArray -}}
{{- if not $directories -}}
{{- fail "config.directory or config.directories: configure at least one directory" -}}
{{- end -}}
{{- range $directories -}}
{{- $entry := . -}}
{{- range $key := list "bind_password" "bind_password_env" "bind_password_file" "ca_file" -}}
{{- if hasKey $entry.config $key -}}
{{- fail (printf "%s.%s is set by the chart: use secret.* and ldapCa.* instead" $entry.key $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- include "okta-ldap-hook.validateDirectories" . -}}
{{- range $key := list "server" "auth" -}}
{{- if hasKey $.Values.config $key -}}
{{- fail (printf "config.%s is set by the chart: use containerPorts, okta.authHeader and secret.* instead" $key) -}}
{{- end -}}
{{- end -}}
{{- if and (include "okta-ldap-hook.bindsWithPassword" .) (not .Values.secret.existingSecret) (not .Values.secret.bindPassword) -}}
{{- fail "config.directory.bind_dn is set: provide secret.bindPassword or secret.existingSecret" -}}
{{- end -}}
{{- if and .Values.secret.existingSecret (not .Values.secret.existingSecretKeys.hookSecrets) -}}
{{- fail "secret.existingSecretKeys.hookSecrets must name at least one key" -}}
{{- end -}}
{{- if and .Values.okta.oauth.issuer (or (not .Values.okta.oauth.audience) (not .Values.okta.oauth.scopes)) -}}
{{- fail "okta.oauth.issuer is set: okta.oauth.audience and okta.oauth.scopes are required" -}}
{{- end -}}
{{- if eq (int .Values.containerPorts.hook) (int .Values.containerPorts.ops) -}}
{{- fail "containerPorts.hook and containerPorts.ops must differ" -}}
{{- end -}}
{{- if not (include "okta-ldap-hook.hookPaths" . | fromJsonArray) -}}
{{- fail "config.hooks: configure at least one of registration, token, saml, user_import, password_import" -}}
{{- end -}}
{{- if not (kindIs "invalid" (index .Values.config.hooks "password_import")) -}}
{{- range $directories -}}
{{- $plain := false -}}
{{- range .config.urls -}}
{{- if hasPrefix "ldap://" . -}}{{- $plain = true -}}{{- end -}}
{{- end -}}
{{- /* A directory with `join` never verifies a password (it holds no accounts). */ -}}
{{- if and $plain (not .config.start_tls) (not .config.join) -}}
{{- fail (printf "config.hooks.password_import: passwords go to the directory only over TLS; use ldaps:// URLs or set %s.start_tls" .key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The secrets and CA bundles of config.directories (the per-directory values name known directories). */}}
{{- define "okta-ldap-hook.validateDirectories" -}}
{{- $names := keys (default (dict) .Values.config.directories) | sortAlpha -}}
{{- $known := printf "(%s)" (join ", " $names) -}}
{{- if not $names -}}{{- $known = "(none: config.directories is not set)" -}}{{- end -}}
{{- $secret := .Values.secret -}}
{{- $perName := dict
  "secret.directoryBindPasswords" $secret.directoryBindPasswords
  "secret.existingSecretKeys.directoryBindPasswords" $secret.existingSecretKeys.directoryBindPasswords
  "ldapCa.directories" .Values.ldapCa.directories -}}
{{- range $valuesKey, $map := $perName -}}
{{- range $name, $_ := (default (dict) $map) -}}
{{- if not (has $name $names) -}}
{{- fail (printf "%s.%s: %s is not a configured directory %s" $valuesKey $name $name $known) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range (include "okta-ldap-hook.directoryBindPasswords" . | fromJsonArray) -}}
{{- if $secret.existingSecret -}}
{{- if not .key -}}
{{- fail (printf "config.directories.%s.bind_dn is set: name the key of secret.existingSecret holding its password in secret.existingSecretKeys.directoryBindPasswords.%s" .name .name) -}}
{{- end -}}
{{- else if not (index (default (dict) $secret.directoryBindPasswords) .name) -}}
{{- fail (printf "config.directories.%s.bind_dn is set: provide secret.directoryBindPasswords.%s (or secret.existingSecret with secret.existingSecretKeys.directoryBindPasswords.%s)" .name .name .name) -}}
{{- end -}}
{{- end -}}
{{- range $name, $ca := (default (dict) .Values.ldapCa.directories) -}}
{{- if and $ca.secretName $ca.configMapName -}}
{{- fail (printf "ldapCa.directories.%s: set secretName or configMapName, not both" $name) -}}
{{- else if not (or $ca.secretName $ca.configMapName) -}}
{{- fail (printf "ldapCa.directories.%s: set secretName or configMapName" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A minimal Okta event of hook type .type, naming a user no directory has (helm test). */}}
{{- define "okta-ldap-hook.sampleEvent" -}}
{{- $user := dict "login" "helm-test@example.invalid" "email" "helm-test@example.invalid" "firstName" "Helm" "lastName" "Test" -}}
{{- $event := dict "eventId" "helm-test" "eventTypeVersion" "1.0" "cloudEventVersion" "0.1" "contentType" "application/json" -}}
{{- if eq .type "registration" -}}
{{- $_ := set $event "eventType" "com.okta.user.pre-registration" -}}
{{- $_ := set $event "requestType" "self.service.registration" -}}
{{- $_ := set $event "data" (dict "userProfile" $user "action" "ALLOW") -}}
{{- else if eq .type "token" -}}
{{- $_ := set $event "eventType" "com.okta.oauth2.tokens.transform" -}}
{{- $_ := set $event "data" (dict "context" (dict "user" (dict "profile" $user)) "identity" (dict "claims" (dict)) "access" (dict "claims" (dict))) -}}
{{- else if eq .type "saml" -}}
{{- $_ := set $event "eventType" "com.okta.saml.tokens.transform" -}}
{{- $_ := set $event "data" (dict "context" (dict "user" (dict "profile" $user)) "assertion" (dict "subject" (dict "nameId" $user.login) "claims" (dict))) -}}
{{- else if eq .type "password_import" -}}
{{- $_ := set $event "eventType" "com.okta.user.credential.password.import" -}}
{{- $_ := set $event "data" (dict "context" (dict "credential" (dict "username" $user.login "password" "helm-test-not-a-password")) "action" (dict "credential" "UNVERIFIED")) -}}
{{- else -}}
{{- $_ := set $event "eventType" "com.okta.import.transform" -}}
{{- $_ := set $event "data" (dict "user" (dict "profile" $user) "appUser" (dict "profile" (dict "email" $user.email))) -}}
{{- end -}}
{{- toJson $event -}}
{{- end -}}
