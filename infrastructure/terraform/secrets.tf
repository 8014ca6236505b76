# Credentials generated at `terraform apply` time. None of them is committed: they live
# in the Terraform state of the laptop that created the cluster (local backend, under
# infrastructure/terraform/, ignored by git) and in the cluster's Secrets.
#
# Why Terraform and not the operators' own generated secrets: a Secret can only be read
# from its own namespace, and the processor (processing), Superset and Airflow each need
# credentials of the Postgres cluster that lives in `database`.

locals {
  pg_host = "flightdeck-pg-rw.database.svc.cluster.local"
}

resource "random_password" "flightdeck_owner" {
  length  = 32
  special = false
}

resource "random_password" "flightdeck_reader" {
  length  = 32
  special = false
}

# Owner of the `flightdeck` database: CloudNativePG's initdb takes it from this
# basic-auth Secret (spec.bootstrap.initdb.secret) instead of generating one.
resource "kubernetes_secret_v1" "flightdeck_owner" {
  metadata {
    name      = "flightdeck-pg-owner"
    namespace = kubernetes_namespace_v1.platform["database"].metadata[0].name
  }
  type = "kubernetes.io/basic-auth"
  data = {
    username = "flightdeck"
    password = random_password.flightdeck_owner.result
  }
}

# The processor's DATABASE_URL, shaped like the `uri` key of CloudNativePG's app secret.
resource "kubernetes_secret_v1" "processor_db" {
  metadata {
    name      = "flightdeck-db"
    namespace = kubernetes_namespace_v1.platform["processing"].metadata[0].name
  }
  data = {
    uri = "postgresql://flightdeck:${random_password.flightdeck_owner.result}@${local.pg_host}:5432/flightdeck"
  }
}

# Read-only role `flightdeck_reader` (spec.managed.roles of the Cluster), used by
# Superset's dashboards and the Airflow check task.
resource "kubernetes_secret_v1" "reader_for_cnpg" {
  metadata {
    name      = "flightdeck-reader"
    namespace = kubernetes_namespace_v1.platform["database"].metadata[0].name
    labels = {
      # CloudNativePG reloads the role's password when this Secret changes.
      "cnpg.io/reload" = "true"
    }
  }
  type = "kubernetes.io/basic-auth"
  data = {
    username = "flightdeck_reader"
    password = random_password.flightdeck_reader.result
  }
}

resource "kubernetes_secret_v1" "reader_for_tools" {
  for_each = toset(["superset", "airflow"])

  metadata {
    name      = "flightdeck-reader"
    namespace = kubernetes_namespace_v1.platform[each.key].metadata[0].name
  }
  data = {
    username = "flightdeck_reader"
    password = random_password.flightdeck_reader.result
    uri      = "postgresql://flightdeck_reader:${random_password.flightdeck_reader.result}@${local.pg_host}:5432/flightdeck"
  }
}

resource "random_password" "superset_admin" {
  length  = 24
  special = false
}

resource "random_password" "superset_secret_key" {
  length  = 48
  special = false
}

resource "kubernetes_secret_v1" "superset" {
  metadata {
    name      = "superset-secrets"
    namespace = kubernetes_namespace_v1.platform["superset"].metadata[0].name
  }
  data = {
    SUPERSET_ADMIN_PASSWORD = random_password.superset_admin.result
    SUPERSET_SECRET_KEY     = random_password.superset_secret_key.result
  }
}

# NB: the Airflow chart would generate these keys itself, but with `randAlphaNum` at
# render time: under Argo CD every sync renders a new value and restarts everything.
resource "random_bytes" "airflow_fernet" {
  length = 32
}

resource "random_password" "airflow_api" {
  length  = 48
  special = false
}

resource "random_password" "airflow_jwt" {
  length  = 48
  special = false
}

resource "random_password" "airflow_admin" {
  length  = 24
  special = false
}

resource "kubernetes_secret_v1" "airflow" {
  metadata {
    name      = "airflow-secrets"
    namespace = kubernetes_namespace_v1.platform["airflow"].metadata[0].name
  }
  data = {
    # A Fernet key is 32 bytes in URL-safe base64.
    fernet-key     = replace(replace(random_bytes.airflow_fernet.base64, "+", "-"), "/", "_")
    api-secret-key = random_password.airflow_api.result
    jwt-secret     = random_password.airflow_jwt.result
    admin-password = random_password.airflow_admin.result
  }
}

resource "random_password" "grafana_admin" {
  length  = 24
  special = false
}

resource "kubernetes_secret_v1" "grafana_admin" {
  metadata {
    name      = "grafana-admin"
    namespace = kubernetes_namespace_v1.platform["monitoring"].metadata[0].name
  }
  data = {
    admin-user     = "admin"
    admin-password = random_password.grafana_admin.result
  }
}
