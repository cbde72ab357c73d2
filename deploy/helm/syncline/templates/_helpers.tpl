{{/* Names, labels and the pieces every Syncline container shares. */}}

{{- define "syncline.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "syncline.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: dict "root" $ "component" "sync" "region" "eu" */}}
{{- define "syncline.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if .region }}
syncline.dev/region: {{ .region }}
{{- end }}
{{- end -}}

{{- define "syncline.image" -}}
image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- end -}}

{{- define "syncline.adminSecretName" -}}
{{- .Values.adminSecret.existingSecret | default (printf "%s-admin" (include "syncline.fullname" .)) -}}
{{- end -}}

{{/* The command of a service container. */}}
{{- define "syncline.command" -}}
command: ["python", "-m", "syncline.cluster", {{ . | quote }}]
{{- end -}}

{{/* Flags every app-running node (txn, sync, scheduler) takes. */}}
{{- define "syncline.nodeArgs" -}}
- --app={{ .root.Values.app.path }}
- --zk-hosts={{ include "syncline.zkHosts" .root }}
- --host=0.0.0.0
- --advertise-host=$(POD_IP)
- --port={{ .service.port }}
- --http-port={{ .service.httpPort }}
{{- include "syncline.tlsArgs" .root }}
{{- end -}}

{{- define "syncline.tlsArgs" -}}
{{- if .Values.tls.enabled }}
- --tls-cert=/etc/syncline/tls/tls.crt
- --tls-key=/etc/syncline/tls/tls.key
- --tls-ca=/etc/syncline/tls/ca.crt
{{- end }}
{{- end -}}

{{- define "syncline.logEnv" -}}
- name: SYNCLINE_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- end -}}

{{- define "syncline.podIpEnv" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end -}}

{{- define "syncline.primaryDsnEnv" -}}
- name: SYNCLINE_PG_DSN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgres.primarySecret.name }}
      key: {{ .Values.postgres.primarySecret.key }}
{{- end -}}

{{/* Volumes and mounts: a writable /tmp (the root file system is read-only), the
app (from a ConfigMap, if given) and the role's TLS Secret. */}}
{{- define "syncline.volumeMounts" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- if .root.Values.app.configMap }}
  - name: app
    mountPath: {{ .root.Values.app.path }}
    readOnly: true
{{- end }}
{{- if .root.Values.tls.enabled }}
  - name: tls
    mountPath: /etc/syncline/tls
    readOnly: true
{{- end }}
{{- end -}}

{{- define "syncline.volumes" -}}
volumes:
  - name: tmp
    emptyDir: {}
{{- if .root.Values.app.configMap }}
  - name: app
    configMap:
      name: {{ .root.Values.app.configMap }}
{{- end }}
{{- if .root.Values.tls.enabled }}
  - name: tls
    secret:
      secretName: {{ printf "%s-%s" .root.Values.tls.secretPrefix .role }}
{{- end }}
{{- end -}}

{{/* Probes on a service's HTTP health port. */}}
{{- define "syncline.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: {{ . }}}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: {{ . }}}
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}

{{- define "syncline.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  fsGroup: 10001
{{- end -}}

{{- define "syncline.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
{{- end -}}

{{/* Prometheus's scrape convention: every service serves /metrics on its HTTP port. */}}
{{- define "syncline.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/path: /metrics
prometheus.io/port: {{ . | quote }}
{{- end -}}

{{/* ZooKeeper's connection string: the in-cluster ensemble's, or zookeeper.hosts. */}}
{{- define "syncline.zkHosts" -}}
{{- if .Values.zookeeper.inCluster.enabled -}}
{{- $name := printf "%s-zookeeper" (include "syncline.fullname" .) -}}
{{- $hosts := list -}}
{{- range $i := until (int .Values.zookeeper.inCluster.replicas) -}}
{{- $hosts = append $hosts (printf "%s-%d.%s:2181" $name $i $name) -}}
{{- end -}}
{{- join "," $hosts -}}
{{- else -}}
{{- required "zookeeper.hosts is needed unless zookeeper.inCluster.enabled" .Values.zookeeper.hosts -}}
{{- end -}}
{{- end -}}

{{/* ZOO_SERVERS of the in-cluster ensemble: dict "root" $ "name" <statefulset> */}}
{{- define "syncline.zookeeperServers" -}}
{{- $servers := list -}}
{{- range $i := until (int .root.Values.zookeeper.inCluster.replicas) -}}
{{- $servers = append $servers (printf "server.%d=%s-%d.%s:2888:3888;2181" (add $i 1) $.name $i $.name) -}}
{{- end -}}
{{- join " " $servers -}}
{{- end -}}

{{- define "syncline.inClusterRedisName" -}}
{{- printf "%s-redis-%s" (include "syncline.fullname" .root) .region -}}
{{- end -}}

{{/* A region's Redis URL: its in-cluster server's, or its redisUrl. dict "root" $ "region" <region> */}}
{{- define "syncline.redisUrl" -}}
{{- if .root.Values.redis.inCluster.enabled -}}
{{- printf "redis://%s:6379/0" (include "syncline.inClusterRedisName" (dict "root" .root "region" .region.name)) -}}
{{- else -}}
{{- required (printf "region %s needs a redisUrl unless redis.inCluster.enabled" .region.name) .region.redisUrl -}}
{{- end -}}
{{- end -}}
