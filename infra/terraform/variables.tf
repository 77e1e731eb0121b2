# Defaults that name things (buckets, topics, suffixes, partitions) equal the defaults in
# feedline/settings.py; tests/unit/test_terraform.py keeps them in step.

# --- project -------------------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project that holds every feedline resource."
  type        = string
}

variable "region" {
  description = "Region of the GKE cluster, Kafka cluster, Memorystore instance and buckets."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of resource names (network, cluster, service accounts, instances)."
  type        = string
  default     = "feedline"
}

variable "labels" {
  description = "Labels put on every resource that takes them."
  type        = map(string)
  default     = { app = "feedline" }
}

# --- network -------------------------------------------------------------------------------

variable "subnet_cidr" {
  description = "Primary range of the subnet shared by GKE nodes, Kafka and Redis clients."
  type        = string
  default     = "10.10.0.0/20"
}

variable "pods_cidr" {
  description = "Secondary range for GKE pods."
  type        = string
  default     = "10.20.0.0/14"
}

variable "services_cidr" {
  description = "Secondary range for GKE services."
  type        = string
  default     = "10.24.0.0/20"
}

variable "gke_master_cidr" {
  description = "/28 range of the private GKE control plane."
  type        = string
  default     = "172.16.0.0/28"
}

# --- object storage ------------------------------------------------------------------------

variable "media_bucket" {
  description = "Bucket for uploaded photos and videos (FEEDLINE_STORAGE__MEDIA_BUCKET). Bucket names are global: override per project."
  type        = string
  default     = "feedline-media"
}

variable "archive_bucket" {
  description = "Bucket for the raw event archive, the source of truth for rebuilds (FEEDLINE_STORAGE__ARCHIVE_BUCKET). Bucket names are global: override per project."
  type        = string
  default     = "feedline-archive"
}

variable "flink_state_bucket" {
  description = "Bucket for Flink checkpoints and savepoints."
  type        = string
  default     = "feedline-flink-state"
}

variable "media_cors_origins" {
  description = "Web origins (scheme, host and optional port) allowed to PUT media with signed URLs from a browser."
  type        = list(string)
}

variable "archive_nearline_after_days" {
  description = "Age in days after which archive objects move from STANDARD to NEARLINE."
  type        = number
  default     = 30
}

variable "archive_coldline_after_days" {
  description = "Age in days after which archive objects move from NEARLINE to COLDLINE."
  type        = number
  default     = 180
}

variable "archive_writer_role" {
  description = "Role of the archiver on the archive bucket. objectCreator writes new objects only; use roles/storage.objectUser if the archiver commits through temporary objects (Flink FileSink)."
  type        = string
  default     = "roles/storage.objectCreator"
}

# --- Kafka (Managed Service for Apache Kafka) ----------------------------------------------

variable "kafka_vcpu_count" {
  description = "vCPUs of the Kafka cluster (at least 3)."
  type        = number
  default     = 3
}

variable "kafka_memory_gib" {
  description = "Memory of the Kafka cluster in GiB (1 to 8 GiB per vCPU)."
  type        = number
  default     = 6
}

variable "event_topics" {
  description = "Event topics: uploads, follows, engagements (FEEDLINE_KAFKA__*_TOPIC)."
  type        = list(string)
  default     = ["uploads", "follows", "engagements"]
}

variable "media_topic" {
  description = "Topic of completed uploads the media worker consumes (FEEDLINE_KAFKA__MEDIA_TOPIC)."
  type        = string
  default     = "media-uploads"
}

variable "dlq_suffix" {
  description = "Suffix of each event topic's dead-letter topic (FEEDLINE_KAFKA__DLQ_SUFFIX)."
  type        = string
  default     = ".dlq"
}

variable "event_topic_partitions" {
  description = "Partitions per event topic (FEEDLINE_KAFKA__PARTITIONS); dead-letter topics get one."
  type        = number
  default     = 3
}

variable "kafka_replication_factor" {
  description = "Replication factor of every topic."
  type        = number
  default     = 3
}

variable "dlq_retention_days" {
  description = "How long dead letters are kept for `feedctl dlq` replays."
  type        = number
  default     = 30
}

# --- Redis (Memorystore) -------------------------------------------------------------------

variable "redis_tier" {
  description = "Memorystore tier: BASIC (single node) or STANDARD_HA (replica with failover)."
  type        = string
  default     = "STANDARD_HA"
}

variable "redis_memory_gb" {
  description = "Memorystore capacity in GB; eviction is allkeys-lru (the cache is rebuildable)."
  type        = number
  default     = 5
}

variable "redis_version" {
  description = "Memorystore Redis version."
  type        = string
  default     = "REDIS_7_2"
}

# --- GKE (Flink and the API) ---------------------------------------------------------------

variable "gke_release_channel" {
  description = "GKE release channel."
  type        = string
  default     = "REGULAR"
}

variable "gke_machine_type" {
  description = "Machine type of the workload node pool (Flink TaskManagers need memory)."
  type        = string
  default     = "e2-standard-8"
}

variable "gke_min_nodes_per_zone" {
  description = "Autoscaler minimum nodes per zone of the workload pool."
  type        = number
  default     = 1
}

variable "gke_max_nodes_per_zone" {
  description = "Autoscaler maximum nodes per zone of the workload pool."
  type        = number
  default     = 3
}

variable "k8s_namespace" {
  description = "Kubernetes namespace of the feedline workloads (Workload Identity bindings)."
  type        = string
  default     = "feedline"
}

variable "k8s_service_accounts" {
  description = "Kubernetes service account names of the API, the archiver job, the other streaming jobs and the media worker."
  type = object({
    api          = string
    archiver     = string
    streaming    = string
    media_worker = string
  })
  default = {
    api          = "feedline-api"
    archiver     = "feedline-archiver"
    streaming    = "feedline-streaming"
    media_worker = "feedline-media-worker"
  }
}

# --- ScyllaDB ------------------------------------------------------------------------------

variable "scylla_contact_points" {
  description = "ScyllaDB contact points (FEEDLINE_CQL__CONTACT_POINTS). ScyllaDB is not created here: it runs under the Scylla Operator on this GKE cluster, or as Scylla Cloud peered with this VPC."
  type        = list(string)
  default     = []
}
