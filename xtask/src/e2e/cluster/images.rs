//! Whether the cluster runs the images that were just built: read from each pod's
//! container status (what the kubelet actually started), compared with the OCI layouts
//! `cargo xtask images --superset` wrote. A mismatch names the pod, what it runs and what
//! was built. Checked: the processor pods, the replay Job's pod (the producer) and the
//! Superset web pods, whose image `up` builds and rolls out the same way.

use std::path::Path;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::NAMESPACE;
use crate::images::built::{self, Built};
use crate::images::superset;

/// Where the Superset chart runs its web pods.
const SUPERSET_NAMESPACE: &str = "superset";
/// The chart's labels of its web pods (the init Job's pod has them too, but is not
/// running once `up` is done) and their container's name, the chart's.
const SUPERSET_PODS: &str = "app=superset,release=superset";
const SUPERSET_CONTAINER: &str = "superset";

/// The builds of the images the e2e checks.
pub struct Builds {
    /// `flightdeck/processor`.
    pub processor: Built,
    /// `flightdeck/producer`, which the replay Job runs.
    pub producer: Built,
    /// `flightdeck/superset`, which the Superset web pods run.
    pub superset: Built,
}

impl Builds {
    /// Reads them from `images` (`target/images`).
    pub fn read(images: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            processor: built::read(&built::planned_in(images, "processor"))?,
            producer: built::read(&built::planned_in(images, "producer"))?,
            superset: built::read(&built::planned_in(images, superset::BIN))?,
        })
    }

    /// Every processor pod must run the processor just built.
    pub async fn check_processor(&self, client: &kube::Client) -> anyhow::Result<()> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=processor"))
            .await
            .context("list the processor pods")?;
        if list.items.is_empty() {
            bail!("no processor pod in {NAMESPACE}: is the platform up (`cargo xtask up`)?");
        }
        for pod in &list.items {
            runs(pod, "processor", &self.processor)?;
        }
        eprintln!(
            "e2e: the processor runs {} ({})",
            self.processor.reference(),
            self.processor.digest
        );
        Ok(())
    }

    /// Every running Superset web pod must run the Superset image just built.
    pub async fn check_superset(&self, client: &kube::Client) -> anyhow::Result<()> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), SUPERSET_NAMESPACE);
        let list = pods
            .list(
                &ListParams::default()
                    .labels(SUPERSET_PODS)
                    .fields("status.phase=Running"),
            )
            .await
            .context("list the Superset pods")?;
        if list.items.is_empty() {
            bail!(
                "no running Superset pod in {SUPERSET_NAMESPACE} (labels {SUPERSET_PODS}): is the platform up (`cargo xtask up`)?"
            );
        }
        for pod in &list.items {
            runs(pod, SUPERSET_CONTAINER, &self.superset)?;
        }
        eprintln!(
            "e2e: Superset runs {} ({})",
            self.superset.reference(),
            self.superset.digest
        );
        Ok(())
    }

    /// The replay Job's pod must run the producer just built.
    pub fn check_replay(&self, pod: &Pod) -> anyhow::Result<()> {
        runs(pod, "producer", &self.producer)
    }
}

/// Fails unless `container` of `pod` runs `built`: the tag the kubelet resolved, and the
/// image id it reports (a repository digest, `…@sha256:<manifest>`, or the image's own
/// id, `sha256:<config>`, as containerd reports an imported image).
pub fn runs(pod: &Pod, container: &str, built: &Built) -> anyhow::Result<()> {
    let name = pod.name_any();
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|statuses| statuses.iter().find(|s| s.name == container))
        .with_context(|| format!("pod {name} has no status for its container {container} yet"))?;
    let image = status.image.as_str();
    let id = status.image_id.as_str();
    let tag = image
        .rsplit_once(':')
        .map(|(_, tag)| tag)
        .unwrap_or_default();
    let same_image = image.ends_with(&built.name) || image.contains(&format!("{}:", built.name));
    let same_digest = id.ends_with(&built.digest) || id == built.config_digest;
    if same_image && tag == built.tag && same_digest {
        return Ok(());
    }
    bail!(
        "pod {name} (container {container}) runs {image} ({}), but the build in target/images is {} ({}, image id {}): \
         the cluster does not run what was just built. Fix: `cargo xtask up` deploys the build",
        if id.is_empty() { "no image id yet" } else { id },
        built.reference(),
        built.digest,
        built.config_digest
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn built() -> Built {
        Built {
            name: "flightdeck/processor".into(),
            tag: "0.1.0-0123456789ab".into(),
            digest: format!("sha256:0123456789ab{}", "0".repeat(52)),
            config_digest: format!("sha256:{}", "c".repeat(64)),
        }
    }

    fn pod(image: &str, image_id: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "processor-6c9f8-x2x7q", "namespace": "processing"},
            "status": {"containerStatuses": [{"name": "processor", "image": image,
                "imageID": image_id, "ready": true, "restartCount": 0}]}}))
        .expect("a pod")
    }

    #[test]
    fn a_pod_runs_the_build_by_repository_digest_or_image_id() {
        let built = built();
        let image = format!("docker.io/{}", built.reference());
        runs(
            &pod(
                &image,
                &format!("docker.io/flightdeck/processor@{}", built.digest),
            ),
            "processor",
            &built,
        )
        .expect("the manifest digest");
        runs(&pod(&image, &built.config_digest), "processor", &built).expect("the image id");
    }

    #[test]
    fn a_pod_running_another_build_is_named_with_both_digests() {
        let built = built();
        let old = "docker.io/flightdeck/processor:0.1.0-ffffffffffff";
        let error = runs(
            &pod(old, &format!("sha256:{}", "f".repeat(64))),
            "processor",
            &built,
        )
        .expect_err("an older build");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "pod processor-6c9f8-x2x7q (container processor) runs {old} (sha256:ffff"
            )),
            "{message}"
        );
        assert!(
            message.contains(&format!(
                "the build in target/images is flightdeck/processor:0.1.0-0123456789ab ({}, image id",
                built.digest
            )),
            "{message}"
        );
        let same_tag_other_content = runs(
            &pod(
                &format!("docker.io/{}", built.reference()),
                &format!("sha256:{}", "e".repeat(64)),
            ),
            "processor",
            &built,
        );
        assert!(
            same_tag_other_content.is_err(),
            "the digest decides, not the tag"
        );
    }
}
