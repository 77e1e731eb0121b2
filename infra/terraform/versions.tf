terraform {
  required_version = ">= 1.6"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.36, < 8.0"
    }
  }

  # State lives in a GCS bucket created out of band; pass it at init time:
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="prefix=feedline"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
