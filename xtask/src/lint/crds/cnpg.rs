//! CloudNativePG `Cluster` (postgresql.cnpg.io/v1), after the CloudNativePG 1.27 API
//! reference.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use super::{LocalRef, Metadata, Resources};

/// A PostgreSQL cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cluster {
    /// `postgresql.cnpg.io/v1`.
    pub api_version: String,
    /// `Cluster`.
    pub kind: String,
    /// Metadata; `<name>-rw` is the read-write service, `<name>-app` the app secret.
    pub metadata: Metadata,
    /// The cluster.
    pub spec: ClusterSpec,
}

/// `spec` of a Cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Number of instances (1 primary + replicas).
    pub instances: u32,
    /// Description.
    pub description: Option<String>,
    /// PostgreSQL image, e.g. `ghcr.io/cloudnative-pg/postgresql:17.5`.
    pub image_name: Option<String>,
    /// Image from an ImageCatalog instead.
    pub image_catalog_ref: Option<Value>,
    /// Image pull policy.
    pub image_pull_policy: Option<String>,
    /// PGDATA volume.
    pub storage: Option<StorageConfiguration>,
    /// WAL volume.
    pub wal_storage: Option<StorageConfiguration>,
    /// How the cluster is created.
    pub bootstrap: Option<Bootstrap>,
    /// Roles and services managed declaratively.
    pub managed: Option<Managed>,
    /// PostgreSQL configuration.
    pub postgresql: Option<PostgresConfiguration>,
    /// Resources of every instance.
    pub resources: Option<Resources>,
    /// Monitoring options.
    pub monitoring: Option<Value>,
    /// Backups.
    pub backup: Option<Value>,
    /// Affinity.
    pub affinity: Option<Value>,
    /// Update strategy: `unsupervised` or `supervised`.
    pub primary_update_strategy: Option<String>,
    /// Update method: `switchover` or `restart`.
    pub primary_update_method: Option<String>,
    /// Enable the `postgres` superuser.
    pub enable_superuser_access: Option<bool>,
    /// Secret of the superuser.
    pub superuser_secret: Option<LocalRef>,
    /// Create a PodDisruptionBudget.
    #[serde(rename = "enablePDB")]
    pub enable_pdb: Option<bool>,
    /// Extra environment.
    pub env: Option<Vec<Value>>,
    /// Extra environment sources.
    pub env_from: Option<Vec<Value>>,
    /// Labels and annotations inherited by generated objects.
    pub inherited_metadata: Option<Value>,
    /// Log level of the instance manager.
    pub log_level: Option<String>,
    /// Seconds to wait for a start.
    pub start_delay: Option<i64>,
    /// Seconds to wait for a stop.
    pub stop_delay: Option<i64>,
    /// Seconds to wait for a switchover.
    pub switchover_delay: Option<i64>,
    /// Seconds before a failover.
    pub failover_delay: Option<i64>,
    /// Smart shutdown timeout.
    pub smart_shutdown_timeout: Option<i64>,
    /// Priority class.
    pub priority_class_name: Option<String>,
    /// Topology spread constraints.
    pub topology_spread_constraints: Option<Vec<Value>>,
    /// Template of the service account.
    pub service_account_template: Option<Value>,
    /// Certificates.
    pub certificates: Option<Value>,
    /// Plugins.
    pub plugins: Option<Vec<Value>>,
    /// Probes.
    pub probes: Option<Value>,
    /// Replication slots.
    pub replication_slots: Option<Value>,
    /// External clusters (replicas, imports).
    pub external_clusters: Option<Vec<Value>>,
    /// Replica cluster configuration.
    pub replica: Option<Value>,
    /// Projected volume template.
    pub projected_volume_template: Option<Value>,
    /// Tablespaces.
    pub tablespaces: Option<Vec<Value>>,
}

/// A volume of the cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StorageConfiguration {
    /// Size, e.g. `2Gi`.
    pub size: Option<String>,
    /// Storage class.
    pub storage_class: Option<String>,
    /// Resize volumes that are in use.
    pub resize_in_use_volumes: Option<bool>,
    /// PVC template.
    pub pvc_template: Option<Value>,
}

/// `spec.bootstrap`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bootstrap {
    /// A new, empty cluster.
    pub initdb: Option<Initdb>,
    /// Recovery from a backup.
    pub recovery: Option<Value>,
    /// A copy of another cluster.
    pub pg_basebackup: Option<Value>,
}

/// `spec.bootstrap.initdb`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Initdb {
    /// Application database.
    pub database: Option<String>,
    /// Owner of the application database.
    pub owner: Option<String>,
    /// Basic-auth Secret with the owner's password (generated when absent).
    pub secret: Option<LocalRef>,
    /// Encoding.
    pub encoding: Option<String>,
    /// Locale.
    pub locale: Option<String>,
    /// LC_COLLATE.
    pub locale_collate: Option<String>,
    /// LC_CTYPE.
    pub locale_c_type: Option<String>,
    /// Locale provider.
    pub locale_provider: Option<String>,
    /// Data checksums.
    pub data_checksums: Option<bool>,
    /// WAL segment size.
    pub wal_segment_size: Option<u32>,
    /// initdb options.
    pub options: Option<Vec<String>>,
    /// SQL run in `postgres` after initdb.
    #[serde(rename = "postInitSQL")]
    pub post_init_sql: Option<Vec<String>>,
    /// SQL run in the application database after initdb.
    #[serde(rename = "postInitApplicationSQL")]
    pub post_init_application_sql: Option<Vec<String>>,
    /// SQL run in `template1` after initdb.
    #[serde(rename = "postInitTemplateSQL")]
    pub post_init_template_sql: Option<Vec<String>>,
    /// SQL from Secrets or ConfigMaps, run in the application database.
    #[serde(rename = "postInitApplicationSQLRefs")]
    pub post_init_application_sql_refs: Option<Value>,
    /// Import from another cluster.
    pub import: Option<Value>,
}

/// `spec.managed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Managed {
    /// Database roles.
    pub roles: Option<Vec<RoleConfiguration>>,
    /// Extra services.
    pub services: Option<Value>,
}

/// A role managed by the operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoleConfiguration {
    /// Role name.
    pub name: String,
    /// `present` or `absent`.
    pub ensure: Option<Ensure>,
    /// Comment.
    pub comment: Option<String>,
    /// LOGIN.
    pub login: Option<bool>,
    /// SUPERUSER.
    pub superuser: Option<bool>,
    /// CREATEDB.
    pub createdb: Option<bool>,
    /// CREATEROLE.
    pub createrole: Option<bool>,
    /// INHERIT.
    pub inherit: Option<bool>,
    /// REPLICATION.
    pub replication: Option<bool>,
    /// BYPASSRLS.
    pub bypassrls: Option<bool>,
    /// CONNECTION LIMIT.
    pub connection_limit: Option<i64>,
    /// VALID UNTIL.
    pub valid_until: Option<String>,
    /// Roles this role is a member of.
    pub in_roles: Option<Vec<String>>,
    /// Basic-auth Secret with the role's password.
    pub password_secret: Option<LocalRef>,
    /// Set no password (NULL).
    pub disable_password: Option<bool>,
}

/// Whether a role must exist.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ensure {
    /// The role exists.
    Present,
    /// The role is dropped.
    Absent,
}

/// `spec.postgresql`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PostgresConfiguration {
    /// postgresql.conf parameters: strings only, as in the CRD.
    pub parameters: Option<BTreeMap<String, String>>,
    /// pg_hba.conf lines.
    pub pg_hba: Option<Vec<String>>,
    /// pg_ident.conf lines.
    pub pg_ident: Option<Vec<String>>,
    /// Extra shared_preload_libraries.
    pub shared_preload_libraries: Option<Vec<String>>,
    /// Synchronous replication.
    pub synchronous: Option<Value>,
    /// LDAP authentication.
    pub ldap: Option<Value>,
    /// Promotion timeout.
    pub promotion_timeout: Option<i64>,
    /// Extensions.
    pub extensions: Option<Vec<Value>>,
}
