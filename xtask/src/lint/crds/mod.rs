//! Typed schemas of the kinds that no upstream file in the catalogue describes: kustomize's
//! `Kustomization`.
//!
//! Custom resources are checked against the CRDs their projects publish ([`super::schema`]),
//! the k3d config against k3d's own JSON schema. A kustomization.yaml is no custom resource
//! and kustomize publishes no schema of it (the SchemaStore one is written by third parties),
//! so this struct, written from the kustomize reference, stays; it denies unknown fields.

// NB: these structs exist to be deserialized: serde reads their fields, nothing else does.
#![allow(dead_code)]

mod kustomize;

use serde::de::DeserializeOwned;

/// Parses a document's text into one typed schema.
type Checker = fn(&str) -> Result<(), serde_yaml::Error>;

/// Every kind with a typed schema here, with its apiVersion and checker.
const KINDS: &[(&str, &str, Checker)] = &[(
    "kustomize.config.k8s.io/v1beta1",
    "Kustomization",
    parse::<kustomize::Kustomization>,
)];

fn parse<T: DeserializeOwned>(text: &str) -> Result<(), serde_yaml::Error> {
    serde_yaml::from_str::<T>(text).map(|_| ())
}

/// Checks `text` against the typed schema of `api_version`/`kind`; `None` when there is none.
pub fn check(api_version: &str, kind: &str, text: &str) -> Option<Result<(), serde_yaml::Error>> {
    KINDS
        .iter()
        .find(|(av, k, _)| *av == api_version && *k == kind)
        .map(|(_, _, parse)| parse(text))
}

/// The apiVersion of a `kind` with a typed schema here.
pub fn api_version_of(kind: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(_, k, _)| *k == kind)
        .map(|(av, _, _)| *av)
}
