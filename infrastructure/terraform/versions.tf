# Terraform and provider versions, pinned exactly: `terraform init` on any machine
# installs the same providers (the lock file `.terraform.lock.hcl` is written by the
# first `cargo xtask up`).
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    helm = {
      source  = "hashicorp/helm"
      version = "3.0.2"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "2.38.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "3.7.2"
    }
  }
}
