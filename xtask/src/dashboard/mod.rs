//! The flightdeck dashboard on this machine: Apache Superset as a local process, the same
//! release and the same dashboard as code as the cluster, and the checks that prove it
//! shows the truth.
//!
//! - [`install`]: Superset in a cached virtualenv, from hashed pins.
//! - [`export`]: the dashboard as code in `infrastructure/`, one source for both targets.
//! - [`instance`]: one running Superset with its metadata under `target/`.
//! - [`api`]: Superset's REST API, as the checks use it.
//! - [`check`]: every chart's data, asked from Superset, equals the same aggregate in SQL.
//! - [`browser`]: headless Chromium logs in, waits for every chart and takes a screenshot.

pub mod api;
pub mod browser;
pub mod check;
pub mod export;
pub mod install;
pub mod instance;

pub use export::Export;
pub use install::Installed;
pub use instance::{Options, Superset};

/// The port `cargo xtask dev` serves Superset on unless `--dashboard-port` says otherwise.
pub const DEFAULT_PORT: u16 = 8088;

/// The SQLAlchemy spelling of a PostgreSQL URL (SQLAlchemy 1.4 refuses `postgres://`).
pub fn sqlalchemy_uri(url: &str) -> String {
    match url.strip_prefix("postgres://") {
        Some(rest) => format!("postgresql://{rest}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_get_the_sqlalchemy_scheme() {
        assert_eq!(
            sqlalchemy_uri("postgres://flightdeck_reader@127.0.0.1:5/flightdeck"),
            "postgresql://flightdeck_reader@127.0.0.1:5/flightdeck"
        );
        assert_eq!(sqlalchemy_uri("postgresql://a@b/c"), "postgresql://a@b/c");
    }
}
