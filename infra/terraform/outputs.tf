output "gke_cluster" {
  description = "GKE cluster name and location (gcloud container clusters get-credentials)."
  value = {
    name     = google_container_cluster.feedline.name
    location = google_container_cluster.feedline.location
  }
}

output "kafka_cluster" {
  description = "Managed Kafka cluster resource name; its bootstrap address comes from `gcloud managed-kafka clusters describe`."
  value       = google_managed_kafka_cluster.feedline.name
}

output "kafka_topics" {
  description = "Event topics and their dead-letter topics."
  value = {
    events       = [for topic in google_managed_kafka_topic.event : topic.topic_id]
    dead_letters = [for topic in google_managed_kafka_topic.dead_letter : topic.topic_id]
    media        = [google_managed_kafka_topic.media.topic_id, google_managed_kafka_topic.media_dead_letter.topic_id]
  }
}

output "buckets" {
  description = "Media, archive and Flink state buckets."
  value = {
    media       = google_storage_bucket.media.name
    archive     = google_storage_bucket.archive.name
    flink_state = google_storage_bucket.flink_state.name
  }
}

output "redis_endpoint" {
  description = "Memorystore host and port (TLS; the AUTH string is the sensitive output redis_auth_string)."
  value = {
    host = google_redis_instance.cache.host
    port = google_redis_instance.cache.port
  }
}

output "redis_auth_string" {
  description = "Memorystore AUTH string: put it into a Kubernetes Secret, never into a file in git."
  value       = google_redis_instance.cache.auth_string
  sensitive   = true
}

output "redis_server_ca_certs" {
  description = "CA certificates clients use to verify Memorystore's TLS certificate."
  value       = [for cert in google_redis_instance.cache.server_ca_certs : cert.cert]
}

output "workload_service_accounts" {
  description = "Google service account per Kubernetes service account (annotate the KSA with iam.gke.io/gcp-service-account)."
  value = {
    for key, account in local.workload_accounts :
    var.k8s_service_accounts[key] => account.email
  }
}

# Non-secret settings for the deployables' ConfigMap. The Kafka bootstrap address, the Redis
# URL (with AUTH) and the API's JWT secret are added from their own sources.
output "feedline_env" {
  description = "FEEDLINE_* environment values derived from this infrastructure."
  value = {
    FEEDLINE_ENVIRONMENT             = "prod"
    FEEDLINE_STORAGE__PROJECT        = var.project_id
    FEEDLINE_STORAGE__MEDIA_BUCKET   = google_storage_bucket.media.name
    FEEDLINE_STORAGE__ARCHIVE_BUCKET = google_storage_bucket.archive.name
    FEEDLINE_KAFKA__PARTITIONS       = tostring(var.event_topic_partitions)
    FEEDLINE_KAFKA__DLQ_SUFFIX       = var.dlq_suffix
    FEEDLINE_KAFKA__MEDIA_TOPIC      = var.media_topic
    FEEDLINE_CQL__CONTACT_POINTS     = jsonencode(var.scylla_contact_points)
  }
}
