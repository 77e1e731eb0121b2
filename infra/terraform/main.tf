# feedline on Google Cloud: object storage, Managed Kafka, Memorystore, GKE (Flink + API)
# and least-privilege service accounts bound to Kubernetes service accounts through
# Workload Identity. ScyllaDB is not created here (see var.scylla_contact_points).

data "google_project" "this" {}

locals {
  dead_letter_topics = [for topic in var.event_topics : "${topic}${var.dlq_suffix}"]
  workload_pool      = "${var.project_id}.svc.id.goog"
}

resource "google_project_service" "enabled" {
  for_each = toset([
    "compute.googleapis.com",
    "container.googleapis.com",
    "iam.googleapis.com",
    "managedkafka.googleapis.com",
    "pubsub.googleapis.com",
    "redis.googleapis.com",
    "storage.googleapis.com",
  ])
  service            = each.value
  disable_on_destroy = false
}

# --- network -------------------------------------------------------------------------------

resource "google_compute_network" "feedline" {
  name                    = "${var.name_prefix}-vpc"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.enabled]
}

resource "google_compute_subnetwork" "feedline" {
  name                     = "${var.name_prefix}-${var.region}"
  region                   = var.region
  network                  = google_compute_network.feedline.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }

  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }
}

# Private nodes reach container registries through Cloud NAT.
resource "google_compute_router" "feedline" {
  name    = "${var.name_prefix}-router"
  region  = var.region
  network = google_compute_network.feedline.id
}

resource "google_compute_router_nat" "feedline" {
  name                               = "${var.name_prefix}-nat"
  router                             = google_compute_router.feedline.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"
}

# --- object storage ------------------------------------------------------------------------

# Media: clients PUT straight to the bucket with V4 signed URLs minted by the API.
resource "google_storage_bucket" "media" {
  name                        = var.media_bucket
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  cors {
    origin          = var.media_cors_origins
    method          = ["PUT", "GET", "HEAD"]
    response_header = ["Content-Type", "x-goog-content-length-range", "x-goog-if-generation-match"]
    max_age_seconds = 3600
  }

  depends_on = [google_project_service.enabled]
}

# Archive: gs://<bucket>/events/<topic>/dt=YYYY-MM-DD/hr=HH/…, colder as it ages.
resource "google_storage_bucket" "archive" {
  name                        = var.archive_bucket
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  lifecycle_rule {
    condition {
      age                   = var.archive_nearline_after_days
      matches_storage_class = ["STANDARD"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }

  lifecycle_rule {
    condition {
      age                   = var.archive_coldline_after_days
      matches_storage_class = ["NEARLINE"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "COLDLINE"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "flink_state" {
  name                        = var.flink_state_bucket
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels
  depends_on                  = [google_project_service.enabled]
}

# --- Kafka ---------------------------------------------------------------------------------

resource "google_managed_kafka_cluster" "feedline" {
  cluster_id = "${var.name_prefix}-kafka"
  location   = var.region
  labels     = var.labels

  capacity_config {
    vcpu_count   = var.kafka_vcpu_count
    memory_bytes = var.kafka_memory_gib * 1024 * 1024 * 1024
  }

  gcp_config {
    access_config {
      network_configs {
        subnet = "projects/${data.google_project.this.number}/regions/${var.region}/subnetworks/${google_compute_subnetwork.feedline.name}"
      }
    }
  }

  rebalance_config {
    mode = "AUTO_REBALANCE_ON_SCALE_UP"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_managed_kafka_topic" "event" {
  for_each           = toset(var.event_topics)
  topic_id           = each.value
  cluster            = google_managed_kafka_cluster.feedline.cluster_id
  location           = var.region
  partition_count    = var.event_topic_partitions
  replication_factor = var.kafka_replication_factor
  configs = {
    "message.timestamp.type" = "LogAppendTime"
  }
}

resource "google_managed_kafka_topic" "dead_letter" {
  for_each           = toset(var.event_topics)
  topic_id           = "${each.value}${var.dlq_suffix}"
  cluster            = google_managed_kafka_cluster.feedline.cluster_id
  location           = var.region
  partition_count    = 1
  replication_factor = var.kafka_replication_factor
  configs = {
    "retention.ms"           = tostring(var.dlq_retention_days * 24 * 60 * 60 * 1000)
    "message.timestamp.type" = "LogAppendTime"
  }
}

# Completed uploads for the media worker (not an event topic) and its dead letters.
resource "google_managed_kafka_topic" "media" {
  topic_id           = var.media_topic
  cluster            = google_managed_kafka_cluster.feedline.cluster_id
  location           = var.region
  partition_count    = var.event_topic_partitions
  replication_factor = var.kafka_replication_factor
  configs = {
    "message.timestamp.type" = "LogAppendTime"
  }
}

resource "google_managed_kafka_topic" "media_dead_letter" {
  topic_id           = "${var.media_topic}${var.dlq_suffix}"
  cluster            = google_managed_kafka_cluster.feedline.cluster_id
  location           = var.region
  partition_count    = 1
  replication_factor = var.kafka_replication_factor
  configs = {
    "retention.ms"           = tostring(var.dlq_retention_days * 24 * 60 * 60 * 1000)
    "message.timestamp.type" = "LogAppendTime"
  }
}

# --- media uploads: object finalize -> Pub/Sub ---------------------------------------------
# Every upload that lands (media/<id>) is announced on Pub/Sub, so an upload whose client
# never calls POST /v1/media/{id}/complete is processed too. The subscription's messages are
# GCS object resources (JSON_API_V1), which the media topic accepts as they are
# (feedline/media/messages.py): a Pub/Sub-to-Kafka forwarder moves them onto var.media_topic.

data "google_storage_project_service_account" "gcs" {}

resource "google_pubsub_topic" "media_uploaded" {
  name   = "${var.name_prefix}-media-uploaded"
  labels = var.labels

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic_iam_member" "gcs_announces_uploads" {
  topic  = google_pubsub_topic.media_uploaded.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_storage_notification" "media_uploaded" {
  bucket             = google_storage_bucket.media.name
  topic              = google_pubsub_topic.media_uploaded.id
  payload_format     = "JSON_API_V1"
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = "media/"

  depends_on = [google_pubsub_topic_iam_member.gcs_announces_uploads]
}

resource "google_pubsub_subscription" "media_uploaded" {
  name                       = "${var.name_prefix}-media-uploaded"
  topic                      = google_pubsub_topic.media_uploaded.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  labels                     = var.labels
}

# --- Redis ---------------------------------------------------------------------------------

resource "google_redis_instance" "cache" {
  name                    = "${var.name_prefix}-cache"
  region                  = var.region
  tier                    = var.redis_tier
  memory_size_gb          = var.redis_memory_gb
  redis_version           = var.redis_version
  authorized_network      = google_compute_network.feedline.id
  connect_mode            = "DIRECT_PEERING"
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"
  labels                  = var.labels

  # A rebuildable cache: evict least-recently-used keys, keep no snapshots.
  redis_configs = {
    "maxmemory-policy" = "allkeys-lru"
  }

  persistence_config {
    persistence_mode = "DISABLED"
  }

  depends_on = [google_project_service.enabled]
}

# --- GKE -----------------------------------------------------------------------------------

resource "google_service_account" "gke_nodes" {
  account_id   = "${var.name_prefix}-gke-nodes"
  display_name = "feedline GKE nodes (logs, metrics, image pulls only)"
}

resource "google_project_iam_member" "gke_nodes" {
  for_each = toset([
    "roles/artifactregistry.reader",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
  ])
  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.gke_nodes.email}"
}

resource "google_container_cluster" "feedline" {
  name                     = "${var.name_prefix}-gke"
  location                 = var.region
  network                  = google_compute_network.feedline.id
  subnetwork               = google_compute_subnetwork.feedline.id
  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = true
  resource_labels          = var.labels

  release_channel {
    channel = var.gke_release_channel
  }

  workload_identity_config {
    workload_pool = local.workload_pool
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = var.gke_master_cidr
  }

  depends_on = [google_project_service.enabled]
}

# Flink JobManagers/TaskManagers, the API and (optionally) the Scylla Operator run here.
resource "google_container_node_pool" "workloads" {
  name               = "workloads"
  cluster            = google_container_cluster.feedline.id
  location           = var.region
  initial_node_count = var.gke_min_nodes_per_zone

  autoscaling {
    min_node_count = var.gke_min_nodes_per_zone
    max_node_count = var.gke_max_nodes_per_zone
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.gke_machine_type
    service_account = google_service_account.gke_nodes.email
    labels          = var.labels

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot = true
    }
  }
}

# --- workload identities (least privilege) ------------------------------------------------

# The API: produces events, mints signed URLs for media (signBlob on itself), reads media.
resource "google_service_account" "api_signer" {
  account_id   = "${var.name_prefix}-api"
  display_name = "feedline API (Kafka producer, media URL signer)"
}

# The archiver job: consumes events and writes new objects into the archive.
resource "google_service_account" "archive_writer" {
  account_id   = "${var.name_prefix}-archiver"
  display_name = "feedline archiver (Kafka consumer, archive writer)"
}

# The fan-out and counters jobs: Kafka only (ScyllaDB and Redis sit on the VPC).
resource "google_service_account" "streaming" {
  account_id   = "${var.name_prefix}-streaming"
  display_name = "feedline streaming jobs (Kafka consumer/producer)"
}

# The media worker: consumes completed uploads, reads them, writes renditions.
resource "google_service_account" "media_worker" {
  account_id   = "${var.name_prefix}-media"
  display_name = "feedline media worker (Kafka consumer, media reader, rendition writer)"
}

locals {
  workload_accounts = {
    api          = google_service_account.api_signer
    archiver     = google_service_account.archive_writer
    streaming    = google_service_account.streaming
    media_worker = google_service_account.media_worker
  }
}

resource "google_project_iam_member" "kafka_client" {
  for_each = local.workload_accounts
  project  = var.project_id
  role     = "roles/managedkafka.client"
  member   = "serviceAccount:${each.value.email}"
}

resource "google_service_account_iam_member" "workload_identity" {
  for_each           = local.workload_accounts
  service_account_id = each.value.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${local.workload_pool}[${var.k8s_namespace}/${var.k8s_service_accounts[each.key]}]"
}

resource "google_service_account_iam_member" "api_signs_as_itself" {
  service_account_id = google_service_account.api_signer.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.api_signer.email}"
}

resource "google_storage_bucket_iam_member" "api_media_create" {
  bucket = google_storage_bucket.media.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.api_signer.email}"
}

resource "google_storage_bucket_iam_member" "api_media_read" {
  bucket = google_storage_bucket.media.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.api_signer.email}"
}

resource "google_storage_bucket_iam_member" "archiver_archive_write" {
  bucket = google_storage_bucket.archive.name
  role   = var.archive_writer_role
  member = "serviceAccount:${google_service_account.archive_writer.email}"
}

resource "google_storage_bucket_iam_member" "flink_state" {
  for_each = {
    archiver  = google_service_account.archive_writer.email
    streaming = google_service_account.streaming.email
  }
  bucket = google_storage_bucket.flink_state.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${each.value}"
}

# Reads uploads and writes renditions (objectCreator cannot read; objectUser may also
# overwrite a rendition with the same bytes when an upload is reprocessed).
resource "google_storage_bucket_iam_member" "media_worker_media" {
  bucket = google_storage_bucket.media.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.media_worker.email}"
}

resource "google_pubsub_subscription_iam_member" "media_worker_notifications" {
  subscription = google_pubsub_subscription.media_uploaded.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.media_worker.email}"
}
