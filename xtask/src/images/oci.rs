//! The image's metadata: OCI config, manifest, index and docker's `manifest.json`.
//!
//! Documents are built with `oci-spec` and written as canonical JSON (keys sorted at
//! every level), because `oci-spec` keeps labels and annotations in `HashMap`s whose
//! order changes from run to run; a digest must not.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, bail};
use oci_spec::image::{
    ANNOTATION_CREATED, ANNOTATION_DESCRIPTION, ANNOTATION_LICENSES, ANNOTATION_REF_NAME,
    ANNOTATION_REVISION, ANNOTATION_TITLE, ANNOTATION_VERSION, Arch, ConfigBuilder, Descriptor,
    Digest, HistoryBuilder, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, OciLayoutBuilder, Os, RootFsBuilder,
};
use serde::Serialize;

use super::layer::{Packed, sha256_digest};
use super::rootfs::{BIN_DIR, CA_BUNDLE, NONROOT_ID};
use super::services::Service;
use super::stamp::Stamp;

/// The annotation containerd (`ctr images import`, `k3d image import`) names images by.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// An image ready to be written: its blobs and what names it.
#[derive(Debug)]
pub struct Image {
    /// `flightdeck/<bin>`.
    pub name: String,
    /// `<version>-<12 hex of the manifest digest>`, then `latest`.
    pub tags: [String; 2],
    /// `sha256:<hex>` of the manifest: the image's identity.
    pub digest: String,
    /// Sum of the uncompressed layer tars.
    pub uncompressed_size: u64,
    /// Sum of the compressed layers, config and manifest: what a registry stores.
    pub compressed_size: u64,
    /// Every file of the OCI image layout, keyed by its path in the layout.
    pub layout: BTreeMap<String, Vec<u8>>,
    /// docker's `manifest.json`, which turns the layout into a `docker load` archive.
    pub docker_manifest: Vec<u8>,
}

/// The image tag: the crate version and the first 12 hex digits of the manifest digest.
pub fn tag(version: &str, manifest_digest: &str) -> Result<String> {
    let hex = manifest_digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("`{manifest_digest}` is not a sha256 digest"))?;
    Ok(format!("{version}-{}", &hex[..12]))
}

/// Serialises `value` as compact JSON with the keys of every object sorted.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    fn sort(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.sort_keys();
                map.values_mut().for_each(sort);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(sort),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(value).context("serialise an image document")?;
    sort(&mut value);
    serde_json::to_vec(&value).context("write an image document")
}

/// The OCI architecture of the machine the binaries were built on.
fn host_arch() -> Result<Arch> {
    Ok(match std::env::consts::ARCH {
        "x86_64" => Arch::Amd64,
        "aarch64" => Arch::ARM64,
        other => bail!("no OCI architecture known for `{other}`"),
    })
}

/// Builds config, manifest and index around packed layers (base first, binary last).
pub fn assemble(service: &Service, stamp: &Stamp, layers: &[(&str, Packed)]) -> Result<Image> {
    let name = format!("flightdeck/{}", service.bin);
    let mut labels = HashMap::from([
        (ANNOTATION_TITLE.to_owned(), name.clone()),
        (ANNOTATION_VERSION.to_owned(), service.version.clone()),
        (ANNOTATION_CREATED.to_owned(), stamp.created.clone()),
    ]);
    let optional = [
        (ANNOTATION_REVISION, &stamp.revision),
        (ANNOTATION_DESCRIPTION, &service.description),
        (ANNOTATION_LICENSES, &service.license),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            labels.insert(key.to_owned(), value.clone());
        }
    }
    let config = ConfigBuilder::default()
        .user(format!("{NONROOT_ID}:{NONROOT_ID}"))
        .env(vec![
            format!("PATH={BIN_DIR}:/usr/bin:/bin"),
            format!("SSL_CERT_FILE={CA_BUNDLE}"),
        ])
        .entrypoint(vec![format!("{BIN_DIR}/{}", service.bin)])
        .working_dir("/")
        .labels(labels)
        .build()
        .context("build the image config")?;
    let history = layers
        .iter()
        .map(|(what, _)| {
            HistoryBuilder::default()
                .created(stamp.created.clone())
                .created_by(format!("cargo xtask images: {what}"))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .context("build the image history")?;
    let image_config = ImageConfigurationBuilder::default()
        .created(stamp.created.clone())
        .architecture(host_arch()?)
        .os(Os::Linux)
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(
                    layers
                        .iter()
                        .map(|(_, l)| l.diff_id.clone())
                        .collect::<Vec<_>>(),
                )
                .build()
                .context("build the image rootfs")?,
        )
        .history(history)
        .build()
        .context("build the image configuration")?;

    let mut layout = BTreeMap::new();
    let mut put = |media_type: MediaType, bytes: Vec<u8>| -> Result<Descriptor> {
        let digest = sha256_digest(&bytes);
        let size = bytes.len() as u64;
        layout.insert(blob_path(&digest), bytes);
        Ok(Descriptor::new(media_type, size, parse_digest(&digest)?))
    };
    let config_desc = put(MediaType::ImageConfig, canonical_json(&image_config)?)?;
    let layer_descs = layers
        .iter()
        .map(|(_, layer)| put(MediaType::ImageLayerGzip, layer.gz.clone()))
        .collect::<Result<Vec<_>>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc.clone())
        .layers(layer_descs.clone())
        .build()
        .context("build the image manifest")?;
    let manifest_desc = put(MediaType::ImageManifest, canonical_json(&manifest)?)?;
    let digest = manifest_desc.digest().to_string();
    let tags = [tag(&service.version, &digest)?, "latest".to_owned()];

    // One index entry per tag, named the way `docker save` names them, so containerd
    // and skopeo (`oci:<dir>:<tag>`) find each tag.
    let manifests = tags
        .iter()
        .map(|tag| {
            let mut desc = manifest_desc.clone();
            desc.set_annotations(Some(HashMap::from([
                (
                    ANNOTATION_CONTAINERD_NAME.to_owned(),
                    format!("docker.io/{name}:{tag}"),
                ),
                (ANNOTATION_REF_NAME.to_owned(), tag.clone()),
            ])));
            desc
        })
        .collect::<Vec<_>>();
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .context("build the image index")?;
    let oci_layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .context("build the oci-layout file")?;
    layout.insert("index.json".to_owned(), canonical_json(&index)?);
    layout.insert("oci-layout".to_owned(), canonical_json(&oci_layout)?);

    let docker_manifest = canonical_json(&[DockerManifest {
        config: blob_path(config_desc.digest().as_ref()),
        repo_tags: tags.iter().map(|tag| format!("{name}:{tag}")).collect(),
        layers: layer_descs
            .iter()
            .map(|d| blob_path(d.digest().as_ref()))
            .collect(),
    }])?;
    let compressed_size = layout
        .iter()
        .filter(|(path, _)| path.starts_with("blobs/"))
        .map(|(_, blob)| blob.len() as u64)
        .sum();
    Ok(Image {
        name,
        tags,
        digest,
        uncompressed_size: layers.iter().map(|(_, l)| l.uncompressed_size).sum(),
        compressed_size,
        layout,
        docker_manifest,
    })
}

/// One entry of docker's `manifest.json` (what `docker load` reads).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// `sha256:<hex>` → `blobs/sha256/<hex>`, the blob's path in a layout.
fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn parse_digest(digest: &str) -> Result<Digest> {
    digest
        .parse()
        .with_context(|| format!("parse the digest `{digest}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::layer::{Tree, pack};

    #[test]
    fn tag_is_the_version_and_twelve_hex_digits_of_the_digest() -> Result<()> {
        let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(tag("0.1.0", &digest)?, "0.1.0-0123456789ab");
        assert!(tag("0.1.0", "sha256:abc").is_err());
        assert!(tag("0.1.0", &digest.replace("sha256", "sha512")).is_err());
        Ok(())
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() -> Result<()> {
        let value = HashMap::from([
            ("b", HashMap::from([("z", 1), ("a", 2)])),
            ("a", HashMap::from([("y", 3), ("c", 4)])),
        ]);
        let json = String::from_utf8(canonical_json(&value)?)?;
        assert_eq!(json, r#"{"a":{"c":4,"y":3},"b":{"a":2,"z":1}}"#);
        Ok(())
    }

    fn image(version: &str) -> Result<Image> {
        let service = Service {
            package: "producer".into(),
            bin: "producer".into(),
            version: version.into(),
            description: Some("polls".into()),
            license: None,
        };
        let mut tree = Tree::default();
        tree.file("usr/local/bin/producer", 0o755, b"bin".to_vec())?;
        let layer = pack(&tree, 7)?;
        assemble(
            &service,
            &Stamp::new(7, Some("abc".into())),
            &[("app", layer)],
        )
    }

    #[test]
    fn the_tag_names_the_manifest_that_the_index_and_docker_manifest_point_at() -> Result<()> {
        let image = image("0.1.0")?;
        let hex = image
            .digest
            .strip_prefix("sha256:")
            .context("digest prefix")?;
        assert_eq!(
            image.tags,
            [format!("0.1.0-{}", &hex[..12]), "latest".into()]
        );
        let manifest = &image.layout[&format!("blobs/sha256/{hex}")];
        assert_eq!(sha256_digest(manifest), image.digest);

        let index: serde_json::Value = serde_json::from_slice(&image.layout["index.json"])?;
        let manifests = index["manifests"].as_array().context("index.manifests")?;
        let mut refs = Vec::new();
        for m in manifests {
            assert_eq!(m["digest"], image.digest.as_str());
            refs.push(
                m["annotations"][ANNOTATION_REF_NAME]
                    .as_str()
                    .context("ref name")?,
            );
        }
        assert_eq!(refs, image.tags);

        let docker: serde_json::Value = serde_json::from_slice(&image.docker_manifest)?;
        assert_eq!(docker[0]["RepoTags"][1], "flightdeck/producer:latest");
        let config_path = docker[0]["Config"].as_str().context("Config")?;
        let config: serde_json::Value = serde_json::from_slice(&image.layout[config_path])?;
        assert_eq!(config["created"], "1970-01-01T00:00:07Z");
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/producer");
        assert_eq!(config["config"]["Labels"][ANNOTATION_REVISION], "abc");
        Ok(())
    }

    #[test]
    fn assembling_twice_gives_the_same_bytes_and_versions_change_the_digest() -> Result<()> {
        let (a, b) = (image("0.1.0")?, image("0.1.0")?);
        assert_eq!(a.layout, b.layout);
        assert_eq!(a.docker_manifest, b.docker_manifest);
        assert_ne!(image("0.2.0")?.digest, a.digest);
        Ok(())
    }
}
