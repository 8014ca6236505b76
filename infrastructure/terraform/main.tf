# Base infrastructure of the k3d cluster: the namespaces, Argo CD, and the Secrets that
# must never be committed. Everything else is synced by Argo CD from
# infrastructure/k8s/root-app.yaml (applied by `cargo xtask up`).

resource "kubernetes_namespace_v1" "platform" {
  for_each = var.namespaces

  metadata {
    name = each.key
    labels = {
      "app.kubernetes.io/part-of" = "flightdeck"
    }
  }
}

resource "helm_release" "argocd" {
  name       = "argocd"
  namespace  = kubernetes_namespace_v1.platform["argocd"].metadata[0].name
  repository = "https://argoproj.github.io/argo-helm"
  chart      = "argo-cd"
  version    = var.argocd_chart_version

  # The chart's CRDs are installed by the chart itself; wait so that the root
  # Application can be applied right after `terraform apply` returns.
  wait    = true
  timeout = 600

  values = [yamlencode({
    # Secrets and components a laptop cluster does not need.
    dex           = { enabled = false }
    notifications = { enabled = false }

    global = {
      # Restricted pod security for every Argo CD component.
      securityContext = {
        runAsNonRoot   = true
        seccompProfile = { type = "RuntimeDefault" }
      }
    }

    configs = {
      params = {
        # TLS ends at `kubectl port-forward`; the UI is served on plain HTTP.
        "server.insecure" = true
      }
      cm = {
        "timeout.reconciliation" = "60s"
        # NB: since Argo CD 1.8 an Application has no health of its own, so sync waves
        # in the app of apps would not wait for a child to be healthy. This restores
        # the health check (documented in "Sync Phases and Waves").
        "resource.customizations.health.argoproj.io_Application" = <<-EOT
          hs = {}
          hs.status = "Progressing"
          hs.message = ""
          if obj.status ~= nil then
            if obj.status.health ~= nil then
              hs.status = obj.status.health.status
              if obj.status.health.message ~= nil then
                hs.message = obj.status.health.message
              end
            end
          end
          return hs
        EOT
      }
    }
  })]
}
