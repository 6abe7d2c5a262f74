{{- define "husk.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "husk.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "husk.installerArgs" -}}
- --config
- {{ .Values.containerd.configPath }}
- --bin-dir
- /host{{ .Values.installDir }}
- --drop-in-dir
- {{ .Values.containerd.dropInDir }}
{{- if .Values.labelNode }}
- --label-node
{{- end }}
{{- end -}}

{{- define "husk.installerEnv" -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end -}}
