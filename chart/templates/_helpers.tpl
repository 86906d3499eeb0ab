{{/* Names and labels. */}}
{{- define "mender-backup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mender-backup.fullname" -}}
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

{{- define "mender-backup.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "mender-backup.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mender
{{- end }}

{{- define "mender-backup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mender-backup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mender-backup.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret this chart creates for credentials passed as values. */}}
{{- define "mender-backup.secretName" -}}
{{- include "mender-backup.fullname" . }}
{{- end }}

{{/*
Which credentials come from values (and so go into the chart's own Secret).
Cross-field rules live here (the schema checks each field alone): exactly one
source per credential, so a typo cannot silently run a backup without one.
*/}}
{{- define "mender-backup.secretData" -}}
{{- $v := .Values }}
{{- if and $v.mongodb.url $v.mongodb.existingSecret }}
{{- fail "mongodb: set either mongodb.url or mongodb.existingSecret, not both" }}
{{- end }}
{{- if not (or $v.mongodb.url $v.mongodb.existingSecret) }}
{{- fail "mongodb: set mongodb.existingSecret (a Secret holding the MongoDB URL) or mongodb.url" }}
{{- end }}
{{- if and (or $v.s3.accessKeyId $v.s3.secretAccessKey) $v.s3.existingSecret }}
{{- fail "s3: set either s3.accessKeyId/s3.secretAccessKey or s3.existingSecret, not both" }}
{{- end }}
{{- if ne (empty $v.s3.accessKeyId) (empty $v.s3.secretAccessKey) }}
{{- fail "s3: s3.accessKeyId and s3.secretAccessKey go together" }}
{{- end }}
{{- $d := $v.destination.s3 }}
{{- if and (or $d.accessKeyId $d.secretAccessKey) $d.existingSecret }}
{{- fail "destination.s3: set either accessKeyId/secretAccessKey or existingSecret, not both" }}
{{- end }}
{{- if ne (empty $d.accessKeyId) (empty $d.secretAccessKey) }}
{{- fail "destination.s3: accessKeyId and secretAccessKey go together" }}
{{- end }}
{{- if and $v.restore.enabled (not $v.restore.backupId) }}
{{- fail "restore.enabled needs restore.backupId (a backup id or \"latest\")" }}
{{- end }}
{{- if and $v.restore.mongodb.url $v.restore.mongodb.existingSecret }}
{{- fail "restore.mongodb: set either url or existingSecret, not both" }}
{{- end }}
{{- if and $v.menderSecrets.enabled (not $v.encryption.existingSecret) }}
{{- fail "menderSecrets.enabled needs encryption.existingSecret: Mender's keys are only stored encrypted" }}
{{- end }}
{{- if and $v.menderSecrets.enabled (not (concat $v.menderSecrets.required $v.menderSecrets.optional)) }}
{{- fail "menderSecrets.enabled needs at least one Secret name in menderSecrets.required or .optional" }}
{{- end }}
{{- if and $v.verifyRestore.enabled (not $v.verifyRestore.mongodb.existingSecret) }}
{{- fail "verifyRestore.enabled needs verifyRestore.mongodb.existingSecret (a Secret with the scratch MongoDB URL)" }}
{{- end }}
{{- with $v.mongodb.url }}
MONGODB_URL: {{ . | b64enc | quote }}
{{- end }}
{{- with $v.s3.accessKeyId }}
AWS_ACCESS_KEY_ID: {{ . | b64enc | quote }}
{{- end }}
{{- with $v.s3.secretAccessKey }}
AWS_SECRET_ACCESS_KEY: {{ . | b64enc | quote }}
{{- end }}
{{- with $d.accessKeyId }}
DEST_AWS_ACCESS_KEY_ID: {{ . | b64enc | quote }}
{{- end }}
{{- with $d.secretAccessKey }}
DEST_AWS_SECRET_ACCESS_KEY: {{ . | b64enc | quote }}
{{- end }}
{{- if $v.restore.enabled }}
{{- with $v.restore.mongodb.url }}
RESTORE_MONGODB_URL: {{ . | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Mender's artifacts in Azure: the container from a value or the Mender Secret, the account from
values (the URL names it; not a secret), and whichever credentials the Secret holds: each
reference optional, as the Mender chart writes a connection string or an account key.
Kubernetes expands $(MENDER_BACKUP_AZURE_CONTAINER) from the variable defined just before.
*/}}
{{- define "mender-backup.azureEnv" -}}
{{- $a := .Values.azure }}
{{- $keys := $a.existingSecretKeys }}
{{- if $a.container }}
- name: MENDER_BACKUP_AZURE_CONTAINER
  value: {{ $a.container | quote }}
{{- else if and $a.existingSecret $keys.container }}
{{ include "mender-backup.secretEnv" (dict "name" "MENDER_BACKUP_AZURE_CONTAINER" "secret" $a.existingSecret "key" $keys.container) }}
{{- else }}
{{- fail "azure: set azure.container, or azure.existingSecret with existingSecretKeys.container" }}
{{- end }}
- name: MENDER_BACKUP_ARTIFACTS_BUCKET
  value: {{ printf "azure://%s/$(MENDER_BACKUP_AZURE_CONTAINER)" $a.account | quote }}
{{- with $a.blobEndpoint }}
- name: AZURE_STORAGE_BLOB_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if $a.existingSecret }}
{{- range $name, $key := dict "AZURE_STORAGE_CONNECTION_STRING" $keys.connectionString "AZURE_STORAGE_KEY" $keys.accountKey }}
{{- if $key }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $a.existingSecret | quote }}
      key: {{ $key | quote }}
      optional: true
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* An env var from a Secret key. */}}
{{- define "mender-backup.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret | quote }}
      key: {{ .key | quote }}
{{- end }}

{{/*
Environment shared by the backup CronJob and the restore Job. Secrets are
always secretKeyRef: a value passed to the chart is in the chart's Secret,
never in the pod spec, so `kubectl get cronjob -o yaml` shows no credential.
*/}}
{{- define "mender-backup.env" -}}
{{- $v := .Values }}
{{- $own := include "mender-backup.secretName" . }}
{{- if $v.mongodb.existingSecret }}
{{ include "mender-backup.secretEnv" (dict "name" "MONGODB_URL" "secret" $v.mongodb.existingSecret "key" $v.mongodb.existingSecretKey) }}
{{- else }}
{{ include "mender-backup.secretEnv" (dict "name" "MONGODB_URL" "secret" $own "key" "MONGODB_URL") }}
{{- end }}
- name: MENDER_BACKUP_DESTINATION
  value: {{ $v.destination.url | quote }}
- name: MENDER_BACKUP_COMPRESSION
  value: {{ $v.compression | quote }}
{{- $keys := $v.s3.existingSecretKeys }}
{{- if $v.azure.account }}
{{- include "mender-backup.azureEnv" . }}
{{- else }}
{{- if not $v.s3.skipArtifacts }}
{{- if $v.s3.bucket }}
- name: MENDER_BACKUP_ARTIFACTS_BUCKET
  value: {{ $v.s3.bucket | quote }}
{{- else if and $v.s3.existingSecret $keys.bucket }}
{{ include "mender-backup.secretEnv" (dict "name" "MENDER_BACKUP_ARTIFACTS_BUCKET" "secret" $v.s3.existingSecret "key" $keys.bucket) }}
{{- end }}
{{- end }}
{{- if $v.s3.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ $v.s3.endpoint | quote }}
{{- else if and $v.s3.existingSecret $keys.endpoint }}
{{ include "mender-backup.secretEnv" (dict "name" "AWS_ENDPOINT_URL" "secret" $v.s3.existingSecret "key" $keys.endpoint) }}
{{- end }}
{{- if $v.s3.region }}
- name: AWS_REGION
  value: {{ $v.s3.region | quote }}
{{- else if and $v.s3.existingSecret $keys.region }}
{{ include "mender-backup.secretEnv" (dict "name" "AWS_REGION" "secret" $v.s3.existingSecret "key" $keys.region) }}
{{- end }}
{{- if $v.s3.existingSecret }}
{{- /* empty key names: no static keys (IRSA / workload identity: the service account's role) */}}
{{- if $keys.accessKeyId }}
{{ include "mender-backup.secretEnv" (dict "name" "AWS_ACCESS_KEY_ID" "secret" $v.s3.existingSecret "key" $keys.accessKeyId) }}
{{- end }}
{{- if $keys.secretAccessKey }}
{{ include "mender-backup.secretEnv" (dict "name" "AWS_SECRET_ACCESS_KEY" "secret" $v.s3.existingSecret "key" $keys.secretAccessKey) }}
{{- end }}
{{- else if $v.s3.accessKeyId }}
{{ include "mender-backup.secretEnv" (dict "name" "AWS_ACCESS_KEY_ID" "secret" $own "key" "AWS_ACCESS_KEY_ID") }}
{{ include "mender-backup.secretEnv" (dict "name" "AWS_SECRET_ACCESS_KEY" "secret" $own "key" "AWS_SECRET_ACCESS_KEY") }}
{{- end }}
{{- end }}
{{- with $v.destination.azure }}
{{- with .blobEndpoint }}
- name: MENDER_BACKUP_DEST_AZURE_STORAGE_BLOB_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- $secret := .existingSecret }}
{{- range $name, $key := dict "MENDER_BACKUP_DEST_AZURE_STORAGE_KEY" .existingSecretKeys.accountKey "MENDER_BACKUP_DEST_AZURE_STORAGE_CONNECTION_STRING" .existingSecretKeys.connectionString "MENDER_BACKUP_DEST_AZURE_STORAGE_SAS_TOKEN" .existingSecretKeys.sasToken }}
{{- if and $secret $key }}
{{ include "mender-backup.secretEnv" (dict "name" $name "secret" $secret "key" $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- $d := $v.destination.s3 }}
{{- with $d.endpoint }}
- name: MENDER_BACKUP_DEST_AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with $d.region }}
- name: MENDER_BACKUP_DEST_AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- if $d.existingSecret }}
{{ include "mender-backup.secretEnv" (dict "name" "MENDER_BACKUP_DEST_AWS_ACCESS_KEY_ID" "secret" $d.existingSecret "key" $d.existingSecretKeys.accessKeyId) }}
{{ include "mender-backup.secretEnv" (dict "name" "MENDER_BACKUP_DEST_AWS_SECRET_ACCESS_KEY" "secret" $d.existingSecret "key" $d.existingSecretKeys.secretAccessKey) }}
{{- else if $d.accessKeyId }}
{{ include "mender-backup.secretEnv" (dict "name" "MENDER_BACKUP_DEST_AWS_ACCESS_KEY_ID" "secret" $own "key" "DEST_AWS_ACCESS_KEY_ID") }}
{{ include "mender-backup.secretEnv" (dict "name" "MENDER_BACKUP_DEST_AWS_SECRET_ACCESS_KEY" "secret" $own "key" "DEST_AWS_SECRET_ACCESS_KEY") }}
{{- end }}
{{- range $name, $value := dict "MENDER_BACKUP_KEEP_LAST" $v.retention.keepLast "MENDER_BACKUP_KEEP_DAILY" $v.retention.keepDaily "MENDER_BACKUP_KEEP_WEEKLY" $v.retention.keepWeekly "MENDER_BACKUP_KEEP_MONTHLY" $v.retention.keepMonthly }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ $name }}
  value: {{ $value | int | toString | quote }}
{{- end }}
{{- end }}
{{- range $name, $value := dict "MENDER_BACKUP_MENDER_CHART" $v.menderRelease.chart "MENDER_BACKUP_MENDER_CHART_VERSION" $v.menderRelease.chartVersion "MENDER_BACKUP_MENDER_APP_VERSION" $v.menderRelease.appVersion }}
{{- with $value }}
- name: {{ $name }}
  value: {{ . | toString | quote }}
{{- end }}
{{- end }}
{{- with $v.encryption.existingSecret }}
{{ include "mender-backup.secretEnv" (dict "name" "MENDER_BACKUP_ENCRYPTION_KEY" "secret" . "key" $v.encryption.existingSecretKey) }}
{{- end }}
{{- with $v.metrics.pushgateway.url }}
- name: MENDER_BACKUP_PUSHGATEWAY_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.notifications.webhook.existingSecret }}
{{ include "mender-backup.secretEnv" (dict "name" "MENDER_BACKUP_WEBHOOK_URL" "secret" . "key" $v.notifications.webhook.existingSecretKey) }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The Secret names the backup stores ("name" required, "name?" optional) and the namespace. */}}
{{- define "mender-backup.menderSecretsNamespace" -}}
{{- .Values.menderSecrets.namespace | default .Release.Namespace }}
{{- end }}

{{- define "mender-backup.menderSecretNames" -}}
{{- $names := list }}
{{- range .Values.menderSecrets.required }}{{ $names = append $names . }}{{ end }}
{{- range .Values.menderSecrets.optional }}{{ $names = append $names (printf "%s?" .) }}{{ end }}
{{- join "," $names }}
{{- end }}

{{/*
Pod spec shared by the CronJob and the restore Job; .args is the container's
argument list (the image's ENTRYPOINT is `mender-backup`), .extraEnv extra env.
*/}}
{{- define "mender-backup.podSpec" -}}
{{- $ := .root }}
{{- $v := $.Values }}
serviceAccountName: {{ include "mender-backup.serviceAccountName" $ }}
automountServiceAccountToken: {{ or $v.automountServiceAccountToken .kubeApi false }}
restartPolicy: Never
{{- if $v.hostNetwork }}
hostNetwork: true
# cluster DNS names (e.g. an in-cluster MongoDB service) still resolve on the host's network
dnsPolicy: ClusterFirstWithHostNet
{{- end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
containers:
  - name: mender-backup
    image: {{ include "mender-backup.image" $ | quote }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    env:
      {{- include "mender-backup.env" $ | trim | nindent 6 }}
      {{- with .extraEnv }}
      {{- . | nindent 6 }}
      {{- end }}
      # Python and boto3 write caches under HOME: keep them on the writable /tmp.
      - name: HOME
        value: /tmp
      # A restore from S3 copies the archive to /tmp once (hashing it on the way): it checks
      # the free space against this, which the emptyDir's statfs does not show.
      - name: MENDER_BACKUP_TMP_LIMIT
        value: {{ $v.tmpSizeLimit | quote }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    {{- with $v.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- with $v.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $v.tmpSizeLimit | quote }}
  {{- with $v.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
