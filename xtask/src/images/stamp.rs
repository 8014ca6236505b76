//! The one point in time an image carries: `SOURCE_DATE_EPOCH`, or the commit time.
//!
//! Every timestamp in an image (tar mtimes, the config's `created`, its history) comes
//! from here, so two builds of the same commit produce byte-identical images.
//! See <https://reproducible-builds.org/docs/source-date-epoch/>.

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

/// When the image was "made", as far as its bytes are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Seconds since the Unix epoch: every mtime in every layer.
    pub epoch: u64,
    /// The same instant as RFC 3339 (`2024-05-01T12:00:00Z`): the config's `created`.
    pub created: String,
    /// The commit the images are built from, when there is one: the
    /// `org.opencontainers.image.revision` label.
    pub revision: Option<String>,
}

impl Stamp {
    /// `SOURCE_DATE_EPOCH` when set, else the time of the last commit (`git log -1 --format=%ct`).
    pub fn resolve(sh: &Shell) -> Result<Self> {
        let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(value) => parse_epoch(&value).context("read SOURCE_DATE_EPOCH")?,
            Err(_) => {
                let ct = cmd!(sh, "git log -1 --format=%ct").quiet().read().context(
                    "read the commit time with `git log` (set SOURCE_DATE_EPOCH outside a git checkout)",
                )?;
                parse_epoch(&ct)
                    .context("parse the commit time printed by `git log -1 --format=%ct`")?
            }
        };
        let revision = cmd!(sh, "git rev-parse HEAD")
            .quiet()
            .ignore_stderr()
            .read()
            .ok()
            .filter(|rev| !rev.is_empty());
        Ok(Self::new(epoch, revision))
    }

    /// A stamp for a fixed instant.
    pub fn new(epoch: u64, revision: Option<String>) -> Self {
        Self {
            epoch,
            created: rfc3339(epoch),
            revision,
        }
    }
}

/// Parses an integer number of seconds, as `SOURCE_DATE_EPOCH` and `%ct` are written.
fn parse_epoch(value: &str) -> Result<u64> {
    let value = value.trim();
    value
        .parse()
        .with_context(|| format!("`{value}` is not a whole number of seconds since 1970"))
}

/// Formats Unix seconds as RFC 3339 in UTC (`2022-04-08T04:37:39Z`); an instant past
/// what jiff represents (year 9999) shows as its last second.
pub fn rfc3339(epoch: u64) -> String {
    let at = i64::try_from(epoch)
        .ok()
        .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_649_392_659), "2022-04-08T04:37:39Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn epoch_accepts_trimmed_integers_and_names_bad_ones() -> Result<()> {
        assert_eq!(parse_epoch(" 1700000000\n")?, 1_700_000_000);
        let err = parse_epoch("yesterday").expect_err("not a number");
        assert!(err.to_string().contains("`yesterday`"), "{err}");
        Ok(())
    }
}
