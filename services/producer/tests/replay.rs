//! Replay mode without a broker: decoding every file up front, the counts, and the
//! binary's behaviour when a file is bad (it fails before it ever connects to Kafka).

use std::path::{Path, PathBuf};
use std::process::Command;

use producer::Error;
use producer::replay::{ReplayFile, ReplayPlan};

/// Four vectors: three positioned (integer floats, an 18th `category` field, a 17-field
/// row) and one without a position.
const MORNING: &str = r#"{"time":1649392659,"states":[
 ["4b1816","SWR1951 ","Switzerland",1649392658,1649392658,3.6738,41.8384,8534.4,false,258.66,66.19,0,null,8755.38,"5551",false,0,0],
 ["3c6444","","Germany",1649392655,1649392658,8,50,9144,false,230,85,0,null,9500,"0505",false,0,2],
 ["4ca7b5","RYR1AB  ","Ireland",null,1649392650,null,null,null,false,200.1,10.5,0,null,null,"2000",false,0,0],
 ["c0173b","ACA850","Canada",1649392640,1649392641,-79.6,43.68,11582.4,false,240.3,45,0,null,11700.1,"2271",false,0]
]}"#;

/// Nothing in view: the API sends `null`.
const QUIET: &str = r#"{"time":1649392669,"states":null}"#;

/// Two vectors, one positioned; pretty-printed like the recordings in `shared/opensky/`.
const EVENING: &str = r#"{
    "time": 1649392679,
    "states": [
        ["aa3cbe", "N759PA  ", "United States", 1649392587, 1649392588, -111.8544, 41.7837, null, true, 1.8, 292.5, null, null, null, null, false, 0, 0],
        ["e4917c", "        ", "Brazil", null, 1649392601, -46.47, -23.43, -30.48, true, 0, 0, null, null, null, null, false, 0, 0]
    ]
}"#;

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write fixture");
    path
}

#[test]
fn the_plan_holds_every_positioned_vector_of_every_file_in_file_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = [
        write(dir.path(), "morning.json", MORNING),
        write(dir.path(), "quiet.json", QUIET),
        write(dir.path(), "evening.json", EVENING),
    ];

    let plan = ReplayPlan::load(&paths).expect("all three are OpenSky responses");

    let files: Vec<ReplayFile> = plan
        .decoded()
        .collect::<Result<_, _>>()
        .expect("the files did not change");
    let records: Vec<_> = files.iter().flat_map(|f| &f.records).collect();
    let icaos: Vec<_> = records.iter().map(|r| r.icao24.as_str()).collect();
    assert_eq!(icaos, ["4b1816", "3c6444", "c0173b", "aa3cbe"]);
    assert_eq!(plan.record_count(), 4);
    assert_eq!(
        plan.dropped_unpositioned(),
        2,
        "4ca7b5 and e4917c have no position"
    );
    let per_file: Vec<_> = plan
        .files
        .iter()
        .map(|f| (f.records, f.dropped_unpositioned))
        .collect();
    assert_eq!(per_file, [(3, 1), (0, 0), (1, 1)]);
    let decoded_per_file: Vec<_> = files
        .iter()
        .map(|f| (f.records.len(), f.dropped_unpositioned))
        .collect();
    assert_eq!(decoded_per_file, per_file);
    let snapshot_times: Vec<_> = records.iter().map(|r| r.snapshot_time).collect();
    assert_eq!(
        snapshot_times,
        [1_649_392_659, 1_649_392_659, 1_649_392_659, 1_649_392_679]
    );
}

#[test]
fn the_plan_decodes_one_file_at_a_time_only_when_the_replay_reaches_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let morning = write(dir.path(), "morning.json", MORNING);
    let evening = write(dir.path(), "evening.json", EVENING);
    let plan = ReplayPlan::load(&[morning, evening.clone()]).expect("decodes");
    let mut decoded = plan.decoded();

    let first = decoded.next().expect("a first file").expect("decodes");
    assert_eq!(first.records.len(), 3);
    // The second file is read only now: breaking it after the check pass is noticed
    // when the replay gets there, naming the file, instead of producing other records.
    std::fs::write(&evening, MORNING).expect("rewrite the second file");
    let error = decoded
        .next()
        .expect("a second file")
        .expect_err("its counts changed");

    assert!(
        error.to_string().contains("evening.json") && error.to_string().contains("changed"),
        "{error}"
    );
    assert!(decoded.next().is_none());
}

#[test]
fn the_summary_line_is_the_json_object_the_xtask_parses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = [
        write(dir.path(), "morning.json", MORNING),
        write(dir.path(), "evening.json", EVENING),
    ];
    let plan = ReplayPlan::load(&paths).expect("decodes");

    let line = plan.summary(plan.record_count()).to_json_line();

    assert_eq!(line, r#"{"files":2,"produced":4,"dropped_unpositioned":2}"#);
}

#[test]
fn a_file_that_is_not_an_opensky_response_fails_the_whole_plan_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = write(dir.path(), "morning.json", MORNING);
    let bad = write(
        dir.path(),
        "flights.json",
        r#"{"icao24":"3c6444","latitude":50.0}"#,
    );

    let error = ReplayPlan::load(&[good, bad.clone()]).expect_err("one file is not a response");

    assert!(
        matches!(&error, Error::DecodeReplayFile { path, .. } if *path == bad),
        "{error:?}"
    );
    let chain = producer::error_chain(&error);
    assert!(chain.contains(&bad.display().to_string()), "{chain}");
    assert!(
        chain.contains("not an OpenSky /api/states/all response"),
        "{chain}"
    );
    assert!(chain.contains("missing field `time`"), "{chain}");
}

#[test]
fn a_bad_state_vector_is_an_error_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = write(
        dir.path(),
        "short.json",
        r#"{"time":1649392659,"states":[["4b1816","SWR1951 ","Switzerland"]]}"#,
    );

    let chain = producer::error_chain(&ReplayPlan::load(&[bad]).expect_err("3 fields"));

    assert!(chain.contains("short.json"), "{chain}");
    assert!(chain.contains("missing `time_position`"), "{chain}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-recording.json");

    let error = ReplayPlan::load(&[missing]).expect_err("nothing to read");

    assert!(matches!(error, Error::ReadReplayFile { .. }), "{error:?}");
    assert!(
        error.to_string().contains("no-such-recording.json"),
        "{error}"
    );
}

/// The binary, with no Kafka or OpenSky settings inherited from the developer's shell.
fn producer_binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_producer"));
    for var in [
        "KAFKA_BOOTSTRAP_SERVERS",
        "FLIGHTS_TOPIC",
        "OPENSKY_API_URL",
        "OPENSKY_BBOX",
        "OPENSKY_CLIENT_ID",
        "OPENSKY_CLIENT_SECRET",
        "OPENSKY_TOKEN_URL",
        "OPENSKY_POLL_INTERVAL_SECS",
        "LOG_FORMAT",
    ] {
        command.env_remove(var);
    }
    command
}

#[test]
fn the_binary_exits_non_zero_naming_the_bad_file_before_touching_kafka() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = write(dir.path(), "morning.json", MORNING);
    let bad = write(dir.path(), "page.html", "<html>Too Many Requests</html>");

    // Nothing listens on port 1: if the binary tried to produce, it would hang for a
    // minute waiting for the broker instead of failing at once.
    let output = producer_binary()
        .args(["--bootstrap-servers", "127.0.0.1:1", "--replay"])
        .args([&good, &bad])
        .output()
        .expect("run producer");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("page.html"), "{stderr}");
    assert!(
        stderr.contains("not an OpenSky /api/states/all response"),
        "{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "no summary line: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn the_binary_prints_its_name_and_version() {
    let output = producer_binary()
        .arg("--version")
        .output()
        .expect("run producer");

    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "producer 0.1.0"
    );
}

#[test]
fn the_binary_rejects_an_upside_down_bbox_with_a_clear_error() {
    let output = producer_binary()
        .args(["--bbox", "50,0,40,1"])
        .output()
        .expect("run producer");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("LAMIN 50 must be below LAMAX 40"),
        "{stderr}"
    );
}

#[test]
fn the_help_never_shows_the_client_secret_from_the_environment() {
    let output = producer_binary()
        .arg("--help")
        .env("OPENSKY_CLIENT_SECRET", "s3cr3t-in-env")
        .output()
        .expect("run producer");

    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(help.contains("OPENSKY_CLIENT_SECRET"), "{help}");
    assert!(!help.contains("s3cr3t-in-env"), "{help}");
}
