output "argocd_admin_password_command" {
  description = "Prints the initial Argo CD admin password (user `admin`); the chart generates it at install time."
  value       = "kubectl --context ${var.kube_context} -n argocd get secret argocd-initial-admin-secret -o jsonpath='{.data.password}' | base64 -d"
}

output "argocd_ui" {
  description = "How to reach the Argo CD UI."
  value       = "kubectl --context ${var.kube_context} -n argocd port-forward svc/argocd-server 8080:80  # then http://localhost:8080"
}

output "root_app_command" {
  description = "Applies the app of apps; Argo CD syncs everything else from git."
  value       = "kubectl --context ${var.kube_context} apply -f infrastructure/k8s/root-app.yaml"
}

output "superset_admin_password" {
  description = "Superset admin password (user `admin`): terraform output -raw superset_admin_password"
  value       = random_password.superset_admin.result
  sensitive   = true
}

output "grafana_admin_password" {
  description = "Grafana admin password (user `admin`): terraform output -raw grafana_admin_password"
  value       = random_password.grafana_admin.result
  sensitive   = true
}

output "airflow_admin_password" {
  description = "Airflow admin password (user `admin`): terraform output -raw airflow_admin_password"
  value       = random_password.airflow_admin.result
  sensitive   = true
}
