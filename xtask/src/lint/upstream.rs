//! The upstream files the lint checks against, pinned in `infrastructure/upstream.toml`.
//!
//! Every file of the catalogue is one GitHub repository's file at one tag with its sha256.
//! They are read from a local mirror (`FLIGHTDECK_UPSTREAM_DIR`, laid out as
//! `OWNER/REPO@TAG/PATH`), else from the cache `~/.cache/flightdeck/upstream/` (same
//! layout), else downloaded into that cache when the network is there. Every file is checked
//! against its sha256 wherever it came from: a mismatch is an error. Files that cannot be had
//! are named with the way to provide them; under `CI=true` that is an error too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::schema::{Crds, JsonSchema};

/// Where the catalogue lives, relative to the project root.
pub const CATALOGUE_PATH: &str = "infrastructure/upstream.toml";
// NB: compiled in, so that the fixtures of the tests are checked against the same pins.
const CATALOGUE: &str = include_str!("../../../infrastructure/upstream.toml");
/// The environment variable naming a local mirror.
pub const MIRROR_ENV: &str = "FLIGHTDECK_UPSTREAM_DIR";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalogue {
    source: Vec<Source>,
}

/// One repository at one tag.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    /// The project (and the chart's name, when `chart` is set).
    name: String,
    /// The version the platform pins.
    version: String,
    /// `owner/name` on GitHub.
    repo: String,
    /// The tag, with `{version}` standing for `version`.
    tag: String,
    /// The chart's directory, when this source is a Helm chart.
    chart: Option<String>,
    /// `apiVersion kind` that the source's JSON schema validates.
    schema_for: Option<String>,
    /// Path in the repository → sha256 (empty: known, not pinned).
    files: BTreeMap<String, String>,
}

impl Source {
    fn tag(&self) -> String {
        self.tag.replace("{version}", &self.version)
    }

    fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }
}

/// A Helm chart's upstream files.
#[derive(Debug)]
pub struct Chart {
    /// Chart name.
    pub name: String,
    /// Chart version.
    pub version: String,
    /// `values.yaml`, when the catalogue has it and it is in reach.
    pub values: Option<serde_yaml::Value>,
    /// `values.schema.json`, compiled.
    pub schema: Option<JsonSchema>,
    /// `(values key, chart name, version)` of every dependency in `Chart.yaml`.
    pub dependencies: Vec<(String, String, String)>,
    /// Why some of its files are not in reach, if they are not.
    pub unchecked: Option<String>,
}

/// Everything loaded from the catalogue.
#[derive(Debug)]
pub struct Upstream {
    /// The CRDs of every source, by apiVersion and kind.
    pub crds: Crds,
    /// The Helm charts.
    pub charts: Vec<Chart>,
    /// JSON schemas of non-Kubernetes kinds (`k3d.io/v1alpha5 Simple`): `(apiVersion, kind, schema)`.
    pub schemas: Vec<(String, String, JsonSchema)>,
    /// Files that could not be had, as `URL (where it was looked for)`.
    pub missing: Vec<String>,
}

impl Upstream {
    /// The chart `name`, at any version.
    pub fn chart(&self, name: &str) -> Option<&Chart> {
        self.charts.iter().find(|c| c.name == name)
    }

    /// Whether every pinned file is in reach: only then is a kind without a CRD an error.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// The upstream files, loaded once per process (the lint and every test share them).
pub fn shared() -> anyhow::Result<&'static Upstream> {
    static LOADED: OnceLock<Result<Upstream, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| load().map_err(|error| format!("{error:#}")))
        .as_ref()
        .map_err(|error| anyhow::anyhow!("{error}"))
}

/// `~/.cache/flightdeck/upstream` ([`localstack::tools::cache_dir`]).
fn cache_dir() -> anyhow::Result<PathBuf> {
    Ok(localstack::tools::cache_dir()?.join("upstream"))
}

/// A file of a source, located.
struct Wanted<'a> {
    source: &'a Source,
    path: &'a str,
    sha256: &'a str,
    /// `OWNER/REPO@TAG/PATH`, the layout of the mirror and of the cache.
    rel: PathBuf,
    url: String,
}

/// Reads the catalogue, finds or fetches every pinned file and compiles the schemas.
pub fn load() -> anyhow::Result<Upstream> {
    let catalogue: Catalogue = toml::from_str(CATALOGUE).context(CATALOGUE_PATH)?;
    let mirror = match std::env::var_os(MIRROR_ENV) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if !dir.is_dir() {
                bail!(
                    "{MIRROR_ENV}={} is not a directory: point it at a mirror laid out as OWNER/REPO@TAG/PATH, or unset it",
                    dir.display()
                );
            }
            Some(dir)
        }
        None => None,
    };
    let cache = cache_dir()?;
    let mut texts: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut wrong_hash = Vec::new();
    let mut to_fetch = Vec::new();
    for source in &catalogue.source {
        for (path, sha256) in &source.files {
            if sha256.is_empty() {
                continue;
            }
            let tag = source.tag();
            let wanted = Wanted {
                source,
                path,
                sha256,
                rel: Path::new(&format!("{}@{tag}", source.repo)).join(path),
                url: format!(
                    "https://raw.githubusercontent.com/{}/{tag}/{path}",
                    source.repo
                ),
            };
            let found = mirror
                .iter()
                .chain([&cache])
                .map(|dir| dir.join(&wanted.rel))
                .find(|p| p.is_file());
            match found {
                Some(file) => {
                    let bytes =
                        std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
                    match verified(&wanted, &bytes) {
                        Ok(text) => {
                            texts.insert(wanted.rel.clone(), text);
                        }
                        Err(problem) => wrong_hash.push(format!("{}: {problem}", file.display())),
                    }
                }
                None => to_fetch.push(wanted),
            }
        }
    }
    let mut missing = Vec::new();
    if !to_fetch.is_empty() {
        let fetched = fetch(&to_fetch, &cache)?;
        for (wanted, result) in to_fetch.iter().zip(fetched) {
            match result {
                Fetched::Text(text) => {
                    texts.insert(wanted.rel.clone(), text);
                }
                Fetched::WrongHash(problem) => {
                    wrong_hash.push(format!("{}: {problem}", wanted.url))
                }
                Fetched::Unreachable(why) => missing.push(format!("{} ({why})", wanted.url)),
            }
        }
    }
    if !wrong_hash.is_empty() {
        bail!(
            "upstream files differ from the sha256 pinned in {CATALOGUE_PATH}:\n  {}\n(after bumping a version, put the new hashes in the catalogue; otherwise delete the file from the cache to fetch it again)",
            wrong_hash.join("\n  ")
        );
    }
    if !missing.is_empty() {
        let help = format!(
            "lint: {} upstream file(s) of {CATALOGUE_PATH} could not be had, so what they describe is not checked:\n  {}\nProvide them: run once with the network (they are cached under {}), or set {MIRROR_ENV} to a directory holding them as OWNER/REPO@TAG/PATH",
            missing.len(),
            missing.join("\n  "),
            cache.display()
        );
        if crate::skips::in_ci() {
            bail!("{help}");
        }
        eprintln!("{help}");
    }
    assemble(&catalogue, &texts, missing)
}

/// The file's text when its sha256 is the pinned one.
fn verified(wanted: &Wanted, bytes: &[u8]) -> Result<String, String> {
    let got = format!("{:x}", Sha256::digest(bytes));
    if got != wanted.sha256 {
        return Err(format!(
            "sha256 is {got}, {} {} pins {}",
            wanted.source.label(),
            wanted.path,
            wanted.sha256
        ));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| "is not UTF-8".to_string())
}

enum Fetched {
    Text(String),
    WrongHash(String),
    Unreachable(String),
}

/// Downloads `wanted` into `cache`, verifying each file before it is stored.
fn fetch(wanted: &[Wanted], cache: &Path) -> anyhow::Result<Vec<Fetched>> {
    eprintln!(
        "lint: fetching {} upstream file(s) into {}",
        wanted.len(),
        cache.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start a tokio runtime")?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .context("build an HTTP client")?;
    let mut out = Vec::new();
    let mut offline: Option<String> = None;
    for (i, file) in wanted.iter().enumerate() {
        // NB: without a network every request fails the same way: do not wait out the
        // timeout once per file.
        if let Some(why) = &offline {
            out.push(Fetched::Unreachable(why.clone()));
            continue;
        }
        eprintln!("lint: [{}/{}] {}", i + 1, wanted.len(), file.url);
        let result = runtime.block_on(async {
            let response = client.get(&file.url).send().await?.error_for_status()?;
            response.bytes().await
        });
        match result {
            Ok(bytes) => match verified(file, &bytes) {
                Ok(text) => {
                    let dest = cache.join(&file.rel);
                    store(&dest, &bytes)?;
                    out.push(Fetched::Text(text));
                }
                Err(problem) => out.push(Fetched::WrongHash(problem)),
            },
            Err(error) if error.is_connect() || error.is_timeout() => {
                eprintln!("lint: no network ({error:#}): not fetching the other files");
                offline = Some("no network".into());
                out.push(Fetched::Unreachable("no network".into()));
            }
            Err(error) => out.push(Fetched::Unreachable(error.to_string())),
        }
    }
    Ok(out)
}

/// Writes `bytes` to `dest` through a temporary file, so a cut download leaves nothing.
fn store(dest: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = dest.parent().context("cache path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = dest.with_extension("part");
    std::fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, dest).with_context(|| format!("rename to {}", dest.display()))
}

/// Sorts the files of every source by what they are for.
fn assemble(
    catalogue: &Catalogue,
    texts: &BTreeMap<PathBuf, String>,
    missing: Vec<String>,
) -> anyhow::Result<Upstream> {
    let mut crd_files = Vec::new();
    let mut charts = Vec::new();
    let mut schemas = Vec::new();
    for source in &catalogue.source {
        let tag = source.tag();
        let text_of =
            |path: &str| texts.get(&Path::new(&format!("{}@{tag}", source.repo)).join(path));
        let in_chart = |path: &str, file: &str| {
            source
                .chart
                .as_deref()
                .is_some_and(|dir| path == format!("{dir}/{file}"))
        };
        let mut chart = source.chart.as_ref().map(|_| Chart {
            name: source.name.clone(),
            version: source.version.clone(),
            values: None,
            schema: None,
            dependencies: Vec::new(),
            unchecked: None,
        });
        for (path, sha256) in &source.files {
            let what = format!("{} {path}", source.label());
            let Some(text) = text_of(path) else {
                let of_chart = ["values.yaml", "values.schema.json", "Chart.yaml"]
                    .iter()
                    .any(|file| in_chart(path, file));
                if let (true, Some(chart)) = (of_chart, &mut chart) {
                    chart.unchecked.get_or_insert(if sha256.is_empty() {
                        format!("{CATALOGUE_PATH} has no sha256 for {path}")
                    } else {
                        format!("{path} is not in reach")
                    });
                }
                continue;
            };
            if let (true, Some(chart)) = (in_chart(path, "values.yaml"), &mut chart) {
                chart.values = Some(serde_yaml::from_str(text).with_context(|| what.clone())?);
            } else if let (true, Some(chart)) = (in_chart(path, "values.schema.json"), &mut chart) {
                let schema: serde_json::Value =
                    serde_json::from_str(text).with_context(|| what.clone())?;
                chart.schema = Some(JsonSchema::compile(schema, &what, None)?);
            } else if let (true, Some(chart)) = (in_chart(path, "Chart.yaml"), &mut chart) {
                chart.dependencies = dependencies(text).with_context(|| what.clone())?;
            } else if let Some(for_kind) = &source.schema_for {
                let (api_version, kind) = for_kind
                    .split_once(' ')
                    .with_context(|| format!("{what}: schema_for is `apiVersion kind`"))?;
                let schema: serde_json::Value =
                    serde_json::from_str(text).with_context(|| what.clone())?;
                schemas.push((
                    api_version.to_string(),
                    kind.to_string(),
                    JsonSchema::compile(schema, &what, None)?,
                ));
            } else {
                crd_files.push((source.label(), path.clone(), text.clone()));
            }
        }
        charts.extend(chart);
    }
    Ok(Upstream {
        crds: Crds::from_files(&crd_files)?,
        charts,
        schemas,
        missing,
    })
}

/// `(values key, name, version)` of the dependencies in a `Chart.yaml`.
fn dependencies(chart_yaml: &str) -> anyhow::Result<Vec<(String, String, String)>> {
    #[derive(Deserialize)]
    struct ChartYaml {
        #[serde(default)]
        dependencies: Vec<Dependency>,
    }
    #[derive(Deserialize)]
    struct Dependency {
        name: String,
        alias: Option<String>,
        version: String,
    }
    let chart: ChartYaml = serde_yaml::from_str(chart_yaml)?;
    Ok(chart
        .dependencies
        .into_iter()
        .map(|d| (d.alias.unwrap_or_else(|| d.name.clone()), d.name, d.version))
        .collect())
}

#[cfg(test)]
mod tests;
