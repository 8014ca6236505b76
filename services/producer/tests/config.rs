//! Flag parsing and `Config::validate`: what a person typing the flags is told.

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use producer::Config;
use producer::opensky::OpenSkySettings;

/// Parses `args`, ignoring what a developer's environment sets for the flags these
/// tests are about (clap reads `OPENSKY_CLIENT_ID` and friends as fallbacks).
fn parse(args: &[&str]) -> Config {
    let mut argv = vec!["producer"];
    argv.extend_from_slice(args);
    let matches = Config::command().get_matches_from(argv);
    let mut config = Config::from_arg_matches(&matches).expect("arguments parse");
    let from_env =
        |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::EnvVariable);
    if from_env("client_id") {
        config.client_id = None;
    }
    if from_env("client_secret") {
        config.client_secret = None;
    }
    if from_env("interval") {
        config.interval = None;
    }
    if from_env("bbox") {
        config.bbox = None;
    }
    config
}

#[test]
fn the_client_secret_is_not_in_the_debug_output_of_the_config_or_the_client_settings() {
    let config = parse(&[
        "--client-id",
        "alice-api-client",
        "--client-secret",
        "hunter2-s3cr3t",
    ]);
    config.validate().expect("valid");
    let settings = OpenSkySettings::from_config(&config);

    for debug in [format!("{config:?}"), format!("{settings:?}")] {
        assert!(!debug.contains("hunter2-s3cr3t"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(
            debug.contains("alice-api-client"),
            "the id is not secret: {debug}"
        );
    }
}

#[test]
fn a_bbox_parses_in_lamin_lomin_lamax_lomax_order() {
    let config = parse(&["--bbox", "45.8389,5.9962,47.8229,10.5226"]);
    let bbox = config.bbox.expect("bbox set");
    assert_eq!(
        (bbox.lamin, bbox.lomin, bbox.lamax, bbox.lomax),
        (45.8389, 5.9962, 47.8229, 10.5226)
    );
    config.validate().expect("a valid box");
}

#[test]
fn a_bbox_with_negative_coordinates_parses() {
    let config = parse(&["--bbox", "-34.1,-58.6,-33.9,-58.3"]);
    config.validate().expect("a valid box in the south-west");
}

#[test]
fn a_bbox_with_three_numbers_is_a_parse_error() {
    let err = Config::try_parse_from(["producer", "--bbox", "1,2,3"]).expect_err("must fail");
    assert!(
        err.to_string()
            .contains("expected 4 comma-separated numbers"),
        "{err}"
    );
}

#[test]
fn a_bbox_outside_the_globe_or_upside_down_is_rejected_by_validate() {
    for (bbox, expected) in [
        ("91,0,92,1", "LAMIN 91 is not a latitude in [-90, 90]"),
        ("0,-181,1,1", "LOMIN -181 is not a longitude in [-180, 180]"),
        ("50,0,40,1", "LAMIN 50 must be below LAMAX 40"),
        ("40,10,50,5", "LOMIN 10 must be below LOMAX 5"),
    ] {
        let err = parse(&["--bbox", bbox])
            .validate()
            .expect_err(bbox)
            .to_string();
        assert!(err.contains(expected), "{bbox}: {err}");
        assert!(err.contains("--bbox"), "{bbox}: {err}");
    }
}

#[test]
fn half_of_the_credentials_is_rejected() {
    let err = parse(&["--client-id", "alice"])
        .validate()
        .expect_err("must fail");
    assert!(err.to_string().contains("without --client-secret"), "{err}");
    let err = parse(&["--client-secret", "s3cr3t"])
        .validate()
        .expect_err("must fail");
    assert!(err.to_string().contains("without --client-id"), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[test]
fn the_interval_defaults_to_10_s_anonymous_and_5_s_authenticated() {
    assert_eq!(parse(&[]).poll_interval(), Duration::from_secs(10));
    let authenticated = parse(&["--client-id", "a", "--client-secret", "b"]);
    assert_eq!(authenticated.poll_interval(), Duration::from_secs(5));
    assert_eq!(
        parse(&["--interval", "30"]).poll_interval(),
        Duration::from_secs(30)
    );
}

#[test]
fn blank_credentials_mean_anonymous() {
    let config = parse(&["--client-id", "", "--client-secret", " "]);
    config.validate().expect("blank is unset");
    assert!(config.credentials().is_none());
    assert_eq!(config.poll_interval(), Duration::from_secs(10));
}

#[test]
fn zero_interval_and_zero_polls_are_rejected() {
    assert!(parse(&["--interval", "0"]).validate().is_err());
    assert!(parse(&["--polls", "0"]).validate().is_err());
}

#[test]
fn replay_takes_several_files() {
    let config = parse(&["--replay", "a.json", "b.json"]);
    assert_eq!(
        config.replay,
        [PathBuf::from("a.json"), PathBuf::from("b.json")]
    );
}
