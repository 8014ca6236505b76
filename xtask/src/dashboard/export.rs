//! The dashboard as code: `infrastructure/k8s/superset/dashboard-export.yaml`, a ConfigMap
//! whose keys are the files of a Superset export plus the importer that loads them.
//!
//! The cluster mounts it into its import Job; the local run writes the same keys into a
//! directory and runs the same importer. Nothing is rewritten here: the importer swaps
//! the database URL, which is all that differs between the targets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The export, relative to the project root.
pub const FILE: &str = "infrastructure/k8s/superset/dashboard-export.yaml";
/// The key holding the importer script.
pub const IMPORTER: &str = "import_assets.py";

/// The parsed export.
#[derive(Debug, Clone)]
pub struct Export {
    /// Where it was read from, for messages.
    pub path: PathBuf,
    /// Every key of the ConfigMap with its text.
    pub files: BTreeMap<String, String>,
}

/// A chart of the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// Its ConfigMap key, e.g. `charts__positions.yaml`.
    pub key: String,
    /// Its title, as the dashboard shows it.
    pub slice_name: String,
    /// Its UUID.
    pub uuid: String,
}

#[derive(Deserialize)]
struct ConfigMap {
    data: BTreeMap<String, String>,
}

impl Export {
    /// Reads `FILE` under `root` and checks every `*.yaml` key is YAML.
    pub fn read(root: &Path) -> anyhow::Result<Self> {
        let path = root.join(FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("read the dashboard export {}", path.display()))?;
        Self::parse(&path, &text)
    }

    /// Parses the ConfigMap text read from `path`.
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<Self> {
        let map: ConfigMap = serde_yaml::from_str(text)
            .with_context(|| format!("{}: not a ConfigMap with `data`", path.display()))?;
        for (key, value) in &map.data {
            if key.ends_with(".yaml")
                && let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(value)
            {
                bail!("{}: key {key}: not YAML: {e}", path.display());
            }
        }
        if !map.data.contains_key(IMPORTER) {
            bail!(
                "{}: the key {IMPORTER} (the importer) is missing",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_owned(),
            files: map.data,
        })
    }

    /// Every chart, in key order.
    pub fn charts(&self) -> anyhow::Result<Vec<Chart>> {
        #[derive(Deserialize)]
        struct Fields {
            slice_name: String,
            uuid: String,
        }
        self.files
            .iter()
            .filter(|(key, _)| key.starts_with("charts__"))
            .map(|(key, text)| {
                let fields: Fields = serde_yaml::from_str(text).with_context(|| {
                    format!("{}: key {key}: slice_name and uuid", self.path.display())
                })?;
                Ok(Chart {
                    key: key.clone(),
                    slice_name: fields.slice_name,
                    uuid: fields.uuid,
                })
            })
            .collect()
    }

    /// A copy without `column` in the dataset of key `dataset`, both in its column list
    /// and, for a virtual dataset, in its SQL's select list (`column, `): what the e2e uses
    /// to prove that a chart reading a missing column fails.
    pub fn without_column(&self, dataset: &str, column: &str) -> anyhow::Result<Self> {
        let text = self
            .files
            .get(dataset)
            .with_context(|| format!("no key {dataset} in {}", self.path.display()))?;
        let mut value: serde_yaml::Value = serde_yaml::from_str(text)?;
        let columns = value
            .get_mut("columns")
            .and_then(serde_yaml::Value::as_sequence_mut)
            .with_context(|| format!("{dataset} has no columns"))?;
        let before = columns.len();
        columns
            .retain(|c| c.get("column_name").and_then(serde_yaml::Value::as_str) != Some(column));
        if columns.len() == before {
            bail!("{dataset} has no column {column}");
        }
        if let Some(serde_yaml::Value::String(sql)) = value.get_mut("sql") {
            let listed = format!("{column}, ");
            if !sql.contains(&listed) {
                bail!("the SQL of {dataset} does not select `{listed}`");
            }
            *sql = sql.replacen(&listed, "", 1);
        }
        let mut out = self.clone();
        out.files
            .insert(dataset.to_owned(), serde_yaml::to_string(&value)?);
        Ok(out)
    }

    /// Writes every key as a file into `dir` (emptied first); returns the importer's path.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        for (key, text) in &self.files {
            std::fs::write(dir.join(key), text)
                .with_context(|| format!("write {}", dir.join(key).display()))?;
        }
        Ok(dir.join(IMPORTER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> Export {
        Export::read(&crate::project_root()).expect("the committed export parses")
    }

    #[test]
    fn the_committed_export_has_the_three_charts_and_the_importer() {
        let export = committed();
        let names: Vec<String> = export
            .charts()
            .expect("charts")
            .into_iter()
            .map(|c| c.slice_name)
            .collect();
        assert_eq!(
            names,
            [
                "Flights per origin country",
                "Positions",
                "Rows landed per minute"
            ]
        );
        assert!(export.files.contains_key("metadata.yaml"));
    }

    #[test]
    fn a_key_that_is_not_yaml_is_named_with_the_file() {
        let text = "data:\n  import_assets.py: x\n  charts__a.yaml: |\n    a: [\n";
        let error = Export::parse(Path::new("export.yaml"), text)
            .expect_err("broken YAML")
            .to_string();
        assert!(
            error.starts_with("export.yaml: key charts__a.yaml: not YAML"),
            "{error}"
        );
    }

    #[test]
    fn removing_a_column_changes_only_that_dataset() {
        let export = committed();
        let key = "datasets__flightdeck__latest_positions.yaml";
        let broken = export
            .without_column(key, "origin_country")
            .expect("column exists");
        assert!(!broken.files[key].contains("column_name: origin_country"));
        assert!(!broken.files[key].contains("origin_country,"));
        assert!(export.files[key].contains("column_name: origin_country"));
        let changed: Vec<&String> = export
            .files
            .keys()
            .filter(|k| export.files[*k] != broken.files[*k])
            .collect();
        assert_eq!(changed, [key]);
        assert!(export.without_column(key, "no_such_column").is_err());
    }
}
