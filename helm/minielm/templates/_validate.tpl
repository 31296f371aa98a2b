{{/*
Checks across values that values.schema.json cannot express. Each failure names the values and
what is expected, and stops `helm install`/`template` before anything reaches the cluster.
Included once, from the settings ConfigMap (always rendered).
*/}}
{{- define "minielm.validate" -}}
{{- range $key, $isvc := .Values.kserve.inferenceServices }}
{{- if and $isvc.enabled (gt (int64 $isvc.minReplicas) (int64 $isvc.maxReplicas)) }}
{{- fail (printf "kserve.inferenceServices.%s.minReplicas (%d) must not exceed kserve.inferenceServices.%s.maxReplicas (%d)" $key (int64 $isvc.minReplicas) $key (int64 $isvc.maxReplicas)) }}
{{- end }}
{{- if and (hasKey $isvc "canaryTrafficPercent") (ne $.Values.kserve.deploymentMode "Serverless") }}
{{- fail (printf "kserve.inferenceServices.%s.canaryTrafficPercent needs kserve.deploymentMode=Serverless (RawDeployment has no traffic split)" $key) }}
{{- end }}
{{- end }}
{{- $kafka := .Values.config.kafka }}
{{- $session := int64 (default 6000 $kafka.session_timeout_ms) }}
{{- $heartbeat := int64 (default 1000 $kafka.heartbeat_interval_ms) }}
{{- if ge $heartbeat $session }}
{{- fail (printf "config.kafka.heartbeat_interval_ms (%d) must be below config.kafka.session_timeout_ms (%d)" $heartbeat $session) }}
{{- end }}
{{- $protocol := default "PLAINTEXT" $kafka.security_protocol }}
{{- if and (hasPrefix "SASL_" $protocol) (not .Values.kafka.sasl.existingSecret) }}
{{- fail (printf "config.kafka.security_protocol=%s needs kafka.sasl.existingSecret (the Secret holding the SASL password)" $protocol) }}
{{- end }}
{{- if and .Values.kafka.sasl.existingSecret (not (hasPrefix "SASL_" $protocol)) }}
{{- fail (printf "kafka.sasl.existingSecret is set but config.kafka.security_protocol=%s uses no SASL (expected SASL_SSL or SASL_PLAINTEXT)" $protocol) }}
{{- end }}
{{- if and .Values.kafka.tls.caSecret (not (hasSuffix "SSL" $protocol)) }}
{{- fail (printf "kafka.tls.caSecret is set but config.kafka.security_protocol=%s uses no TLS (expected SSL or SASL_SSL)" $protocol) }}
{{- end }}
{{- if and .Values.kafka.strimziUser (ne $protocol "SASL_SSL") (ne $protocol "SASL_PLAINTEXT") }}
{{- fail "kafka.strimziUser=true renders a SCRAM-SHA-512 KafkaUser: set config.kafka.security_protocol=SASL_SSL and config.kafka.sasl_mechanism=SCRAM-SHA-512" }}
{{- end }}
{{- $feedback := default (dict) .Values.config.feedback }}
{{- if and (hasKey $feedback "window_s") (hasKey $feedback "unmatched_after_s") }}
{{- if lt (float64 $feedback.unmatched_after_s) (float64 $feedback.window_s) }}
{{- fail (printf "config.feedback.unmatched_after_s (%v) must be at least config.feedback.window_s (%v): feedback would be called unmatched before its window closes" $feedback.unmatched_after_s $feedback.window_s) }}
{{- end }}
{{- end }}
{{- $rl := default (dict) .Values.config.rl }}
{{- if and $rl.kserve_rollout (not .Values.kserve.inferenceServices.rewriter.enabled) }}
{{- fail "config.rl.kserve_rollout=true needs kserve.inferenceServices.rewriter.enabled=true (the canary runs on that InferenceService)" }}
{{- end }}
{{- if and $rl.kserve_rollout (ne .Values.kserve.deploymentMode "Serverless") }}
{{- fail "config.rl.kserve_rollout=true needs kserve.deploymentMode=Serverless (the canary is a Knative traffic split); set config.rl.kserve_rollout=false for RawDeployment" }}
{{- end }}
{{- end }}
