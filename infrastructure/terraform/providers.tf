# Both providers talk to the k3d cluster through one kubeconfig context, so a
# `terraform apply` can never land on whatever cluster kubectl happens to point at.

provider "kubernetes" {
  config_path    = pathexpand(var.kubeconfig_path)
  config_context = var.kube_context
}

# NB: the helm provider 3.x takes `kubernetes` as an attribute (`= {`), not a block.
provider "helm" {
  kubernetes = {
    config_path    = pathexpand(var.kubeconfig_path)
    config_context = var.kube_context
  }
}
