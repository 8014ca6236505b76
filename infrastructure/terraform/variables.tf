variable "kubeconfig_path" {
  description = "Path of the kubeconfig that holds the k3d cluster's context."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "kubeconfig context of the k3d cluster (k3d names it `k3d-<cluster name>`)."
  type        = string
  default     = "k3d-flightdeck"
}

variable "argocd_chart_version" {
  description = "Version of the argo-cd Helm chart (https://argoproj.github.io/argo-helm). Chart 8.5.0 ships Argo CD v3.1.5."
  type        = string
  default     = "8.5.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.argocd_chart_version))
    error_message = "Pin an exact chart version such as 8.5.0: no ranges, no `latest`."
  }
}

variable "namespaces" {
  description = "Namespaces of the platform. Terraform owns them so the generated Secrets below have a home before Argo CD syncs anything."
  type        = set(string)
  default     = ["argocd", "kafka", "database", "processing", "airflow", "superset", "monitoring"]
}
