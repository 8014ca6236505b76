//! Strimzi `Kafka`, `KafkaNodePool` and `KafkaTopic` (kafka.strimzi.io/v1beta2), after the
//! Strimzi 0.47 custom resource API reference.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use super::{LabelSelector, Metadata, Resources};

/// A Kafka cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kafka {
    /// `kafka.strimzi.io/v1beta2`.
    pub api_version: String,
    /// `Kafka`.
    pub kind: String,
    /// Metadata; KRaft and node pools need the `strimzi.io/*` annotations before 0.48.
    pub metadata: Metadata,
    /// The cluster.
    pub spec: KafkaSpec,
}

/// `spec` of a Kafka.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Brokers and controllers.
    pub kafka: KafkaClusterSpec,
    /// Topic and user operators.
    pub entity_operator: Option<EntityOperator>,
    /// Kafka Exporter.
    pub kafka_exporter: Option<Value>,
    /// Cruise Control.
    pub cruise_control: Option<Value>,
    /// Cluster CA.
    pub cluster_ca: Option<Value>,
    /// Clients CA.
    pub clients_ca: Option<Value>,
    /// Maintenance windows (cron expressions).
    pub maintenance_time_windows: Option<Vec<String>>,
}

/// `spec.kafka`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// Kafka version, e.g. `4.0.0`.
    pub version: Option<String>,
    /// KRaft metadata version, e.g. `4.0-IV3`.
    pub metadata_version: Option<String>,
    /// Listeners.
    pub listeners: Vec<Listener>,
    /// Broker configuration.
    pub config: Option<BTreeMap<String, Value>>,
    /// Authorization.
    pub authorization: Option<Value>,
    /// Rack awareness.
    pub rack: Option<Value>,
    /// Container image (default: the operator's for `version`).
    pub image: Option<String>,
    /// Resources (node pools set their own).
    pub resources: Option<Resources>,
    /// JVM options.
    pub jvm_options: Option<JvmOptions>,
    /// Logging.
    pub logging: Option<Value>,
    /// Metrics exporter configuration.
    pub metrics_config: Option<Value>,
    /// Pod and service templates.
    pub template: Option<Value>,
    /// Liveness probe.
    pub liveness_probe: Option<Value>,
    /// Readiness probe.
    pub readiness_probe: Option<Value>,
    /// Quotas plugin.
    pub quotas: Option<Value>,
    /// Tiered storage.
    pub tiered_storage: Option<Value>,
    /// Image of the rack init container.
    pub broker_rack_init_image: Option<String>,
}

/// A listener of the brokers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Listener {
    /// Name, lowercase.
    pub name: String,
    /// Port inside the pods.
    pub port: u16,
    /// `internal`, `cluster-ip`, `route`, `loadbalancer`, `nodeport` or `ingress`.
    #[serde(rename = "type")]
    pub listener_type: ListenerType,
    /// TLS on the listener.
    pub tls: bool,
    /// Client authentication.
    pub authentication: Option<Value>,
    /// Listener options.
    pub configuration: Option<ListenerConfiguration>,
    /// Who may connect (NetworkPolicy peers).
    pub network_policy_peers: Option<Vec<Value>>,
}

/// The listener types Strimzi knows.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerType {
    /// Headless services inside the cluster.
    Internal,
    /// A ClusterIP service per broker.
    ClusterIp,
    /// OpenShift routes.
    Route,
    /// LoadBalancer services.
    Loadbalancer,
    /// NodePort services.
    Nodeport,
    /// Ingress (TLS passthrough).
    Ingress,
}

/// `listeners[].configuration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerConfiguration {
    /// The bootstrap service.
    pub bootstrap: Option<Value>,
    /// Per-broker overrides.
    pub brokers: Option<Vec<ListenerBroker>>,
    /// Broker certificate.
    pub broker_cert_chain_and_key: Option<Value>,
    /// Ingress or LoadBalancer class.
    pub class: Option<String>,
    /// `Local` or `Cluster`.
    pub external_traffic_policy: Option<String>,
    /// LoadBalancer source ranges.
    pub load_balancer_source_ranges: Option<Vec<String>>,
    /// Finalizers of LoadBalancer services.
    pub finalizers: Option<Vec<String>>,
    /// Node address type advertised by NodePort listeners.
    pub preferred_node_port_address_type: Option<String>,
    /// Use the cluster's DNS domain in advertised names.
    pub use_service_dns_domain: Option<bool>,
    /// Connection limit.
    pub max_connections: Option<i64>,
    /// Connection rate limit.
    pub max_connection_creation_rate: Option<i64>,
    /// Create the bootstrap service.
    pub create_bootstrap_service: Option<bool>,
    /// IP family policy of the services.
    pub ip_family_policy: Option<String>,
    /// IP families of the services.
    pub ip_families: Option<Vec<String>>,
    /// Template of per-broker hosts.
    pub host_template: Option<String>,
    /// Template of advertised hosts.
    pub advertised_host_template: Option<String>,
    /// Allocate node ports for LoadBalancer services.
    pub allocate_load_balancer_node_ports: Option<bool>,
    /// Publish addresses of pods that are not ready.
    pub publish_not_ready_addresses: Option<bool>,
}

/// `listeners[].configuration.brokers[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerBroker {
    /// Node ID.
    pub broker: i32,
    /// Host name advertised to clients.
    pub advertised_host: Option<String>,
    /// Port advertised to clients.
    pub advertised_port: Option<u16>,
    /// Host of a route or ingress.
    pub host: Option<String>,
    /// Node port of a NodePort listener.
    pub node_port: Option<u16>,
    /// LoadBalancer IP.
    #[serde(rename = "loadBalancerIP")]
    pub load_balancer_ip: Option<String>,
    /// Service annotations.
    pub annotations: Option<BTreeMap<String, String>>,
    /// Service labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// External IPs.
    #[serde(rename = "externalIPs")]
    pub external_ips: Option<Vec<String>>,
}

/// JVM options of a Kafka or node pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JvmOptions {
    /// Initial heap.
    #[serde(rename = "-Xms")]
    pub xms: Option<String>,
    /// Maximum heap.
    #[serde(rename = "-Xmx")]
    pub xmx: Option<String>,
    /// `-XX` options.
    #[serde(rename = "-XX")]
    pub xx: Option<BTreeMap<String, Value>>,
    /// GC logging.
    #[serde(rename = "gcLoggingEnabled")]
    pub gc_logging_enabled: Option<bool>,
    /// `-D` properties.
    #[serde(rename = "javaSystemProperties")]
    pub java_system_properties: Option<Vec<Value>>,
}

/// `spec.entityOperator`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntityOperator {
    /// The Topic Operator (it owns the KafkaTopics).
    pub topic_operator: Option<EntityTopicOperator>,
    /// The User Operator.
    pub user_operator: Option<Value>,
    /// Pod templates.
    pub template: Option<Value>,
}

/// `spec.entityOperator.topicOperator`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntityTopicOperator {
    /// Namespace it watches (default: the Kafka's).
    pub watched_namespace: Option<String>,
    /// Image.
    pub image: Option<String>,
    /// Reconciliation period.
    pub reconciliation_interval_ms: Option<i64>,
    /// Resources.
    pub resources: Option<Resources>,
    /// Logging.
    pub logging: Option<Value>,
    /// JVM options.
    pub jvm_options: Option<JvmOptions>,
    /// Liveness probe.
    pub liveness_probe: Option<Value>,
    /// Readiness probe.
    pub readiness_probe: Option<Value>,
    /// Startup probe.
    pub startup_probe: Option<Value>,
}

/// A pool of Kafka nodes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaNodePool {
    /// `kafka.strimzi.io/v1beta2`.
    pub api_version: String,
    /// `KafkaNodePool`.
    pub kind: String,
    /// Metadata; the `strimzi.io/cluster` label names the Kafka.
    pub metadata: Metadata,
    /// The pool.
    pub spec: KafkaNodePoolSpec,
}

/// `spec` of a KafkaNodePool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaNodePoolSpec {
    /// Number of nodes.
    pub replicas: u32,
    /// `controller` and/or `broker`.
    pub roles: Vec<ProcessRole>,
    /// Storage.
    pub storage: Storage,
    /// Resources per node.
    pub resources: Option<Resources>,
    /// JVM options.
    pub jvm_options: Option<JvmOptions>,
    /// Pod templates.
    pub template: Option<Value>,
}

/// KRaft process roles.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessRole {
    /// KRaft controller.
    Controller,
    /// Broker.
    Broker,
}

/// Storage of a node pool (`jbod`, `persistent-claim` or `ephemeral`) or of a JBOD volume.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Storage {
    /// `jbod`, `persistent-claim` or `ephemeral`.
    #[serde(rename = "type")]
    pub storage_type: StorageType,
    /// Volumes of a `jbod`.
    pub volumes: Option<Vec<Storage>>,
    /// Volume ID inside a `jbod`.
    pub id: Option<u32>,
    /// Size of a persistent claim, e.g. `2Gi`.
    pub size: Option<String>,
    /// Size limit of an ephemeral volume.
    pub size_limit: Option<String>,
    /// Storage class.
    pub class: Option<String>,
    /// Delete the claim with the cluster.
    pub delete_claim: Option<bool>,
    /// `shared` when the KRaft metadata log lives on this volume.
    pub kraft_metadata: Option<String>,
    /// PV selector.
    pub selector: Option<LabelSelector>,
}

/// Storage types.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageType {
    /// Several volumes.
    Jbod,
    /// A PersistentVolumeClaim.
    PersistentClaim,
    /// An emptyDir.
    Ephemeral,
}

/// A topic managed by the Topic Operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaTopic {
    /// `kafka.strimzi.io/v1beta2`.
    pub api_version: String,
    /// `KafkaTopic`.
    pub kind: String,
    /// Metadata; the `strimzi.io/cluster` label names the Kafka.
    pub metadata: Metadata,
    /// The topic.
    pub spec: KafkaTopicSpec,
}

/// `spec` of a KafkaTopic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaTopicSpec {
    /// Topic name when it differs from `metadata.name`.
    pub topic_name: Option<String>,
    /// Number of partitions.
    pub partitions: Option<u32>,
    /// Replication factor.
    pub replicas: Option<u16>,
    /// Topic configuration.
    pub config: Option<BTreeMap<String, Value>>,
}
