//! The OpenSky client against a local HTTP server standing in for the API and its
//! token endpoint: what each answer becomes, and what the retry policy makes of it.

use std::time::Duration;

use producer::Error;
use producer::config::{BoundingBox, Secret};
use producer::opensky::{Credentials, OpenSkyClient, OpenSkySettings, PollOutcome, Snapshot};
use producer::retry::{Next, RetryPolicy};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const STATES_PATH: &str = "/api/states/all";
const TOKEN_PATH: &str = "/auth/token";
const CLIENT_SECRET: &str = "s3cr3t-do-not-print";

/// Three vectors as the real feed sends them: integer floats and a padded callsign, an
/// empty callsign, and one without a position.
const STATES: &str = r#"{"time":1649392659,"states":[
 ["3c6444","DLH9LF  ","Germany",1649392655,1649392658,8,50,9144,false,230,85,0,null,9500,"0505",false,0,2],
 ["3ddc6b","","",1649392650,1649392652,11.1,47.8,-30.48,false,25.4,-120.5,1.2,null,null,null,false,3,0],
 ["4ca7b5","RYR1AB  ","Ireland",null,1649392650,null,null,null,false,200.1,10.5,0,null,null,"2000",false,0,0]
]}"#;

fn settings(server: &MockServer) -> OpenSkySettings {
    OpenSkySettings {
        api_url: format!("{}/api", server.uri()),
        bbox: None,
        extended: false,
        credentials: None,
        request_timeout: Duration::from_secs(5),
    }
}

fn authenticated(server: &MockServer) -> OpenSkySettings {
    OpenSkySettings {
        credentials: Some(Credentials {
            token_url: format!("{}{TOKEN_PATH}", server.uri()),
            client_id: "alice-api-client".into(),
            client_secret: Secret::from(CLIENT_SECRET.to_owned()),
        }),
        ..settings(server)
    }
}

fn token(access_token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "access_token": access_token,
        "expires_in": expires_in,
        "token_type": "Bearer",
        "scope": "profile email",
    }))
}

async fn requests_to(server: &MockServer, wanted: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == wanted)
        .collect()
}

fn bearer(request: &Request) -> Option<String> {
    let value = request.headers.get("authorization")?.to_str().ok()?;
    Some(value.to_owned())
}

fn snapshot(outcome: PollOutcome) -> Snapshot {
    match outcome {
        PollOutcome::Snapshot(snapshot) => snapshot,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[tokio::test]
async fn a_200_decodes_into_records_with_integer_floats_and_empty_strings_as_null() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(STATES_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("X-Rate-Limit-Remaining", "396")
                .set_body_string(STATES),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(settings(&server)).expect("client");

    let snapshot = snapshot(client.poll().await.expect("a 200 is a snapshot"));

    assert_eq!(snapshot.time, 1_649_392_659);
    assert_eq!(snapshot.dropped_unpositioned, 1, "4ca7b5 has no position");
    assert_eq!(snapshot.remaining_credits, Some(396));
    let icaos: Vec<_> = snapshot.records.iter().map(|r| r.icao24.as_str()).collect();
    assert_eq!(icaos, ["3c6444", "3ddc6b"]);
    let lufthansa = &snapshot.records[0];
    assert_eq!(lufthansa.callsign.as_deref(), Some("DLH9LF"), "trimmed");
    assert_eq!((lufthansa.longitude, lufthansa.latitude), (8.0, 50.0));
    assert_eq!(lufthansa.baro_altitude, Some(9144.0));
    assert_eq!(lufthansa.squawk.as_deref(), Some("0505"));
    assert_eq!(lufthansa.snapshot_time, 1_649_392_659);
    let flarm = &snapshot.records[1];
    assert_eq!(flarm.callsign, None, "\"\" becomes null");
    assert_eq!(flarm.origin_country, None, "\"\" becomes null");
    assert_eq!(flarm.true_track, Some(-120.5));
    let anonymous = requests_to(&server, STATES_PATH).await;
    assert_eq!(
        bearer(&anonymous[0]),
        None,
        "anonymous polls carry no token"
    );
}

#[tokio::test]
async fn a_429_waits_the_seconds_of_the_retry_after_header() {
    let server = MockServer::start().await;
    Mock::given(path(STATES_PATH))
        .respond_with(
            ResponseTemplate::new(429).insert_header("X-Rate-Limit-Retry-After-Seconds", "7"),
        )
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(settings(&server)).expect("client");

    let result = client.poll().await;

    assert!(
        matches!(&result, Ok(PollOutcome::RateLimited { retry_after: Some(wait) }) if *wait == Duration::from_secs(7)),
        "{result:?}"
    );
    let policy = RetryPolicy::new(Duration::from_secs(10));
    for jitter in [0.0, 0.5, 1.0] {
        assert_eq!(
            policy.next(&result, 0, jitter),
            Next::Retry {
                after: Duration::from_secs(7),
                attempt: 1
            }
        );
    }
}

#[tokio::test]
async fn a_429_without_the_header_falls_back_to_backoff() {
    let server = MockServer::start().await;
    Mock::given(path(STATES_PATH))
        .respond_with(ResponseTemplate::new(429))
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(settings(&server)).expect("client");

    let result = client.poll().await;

    assert!(
        matches!(result, Ok(PollOutcome::RateLimited { retry_after: None })),
        "{result:?}"
    );
    let policy = RetryPolicy::new(Duration::from_secs(10));
    assert_eq!(
        policy.next(&result, 2, 1.0),
        Next::Retry {
            after: Duration::from_secs(40),
            attempt: 3
        }
    );
}

#[tokio::test]
async fn a_500_is_a_retryable_error_that_backs_off_exponentially() {
    let server = MockServer::start().await;
    Mock::given(path(STATES_PATH))
        .respond_with(ResponseTemplate::new(500).set_body_string("Internal Server Error"))
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(settings(&server)).expect("client");

    let result = client.poll().await;

    let error = result.as_ref().expect_err("a 500 is an error");
    assert!(
        matches!(error, Error::ServerError { status: 500, .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert!(error.to_string().contains("HTTP 500"), "{error}");
    let policy = RetryPolicy::new(Duration::from_secs(10));
    let waits: Vec<_> = (0..4)
        .map(|failures| match policy.next(&result, failures, 1.0) {
            Next::Retry { after, .. } => after.as_secs(),
            other => panic!("a 500 is retried, got {other:?}"),
        })
        .collect();
    assert_eq!(waits, [10, 20, 40, 80]);
    assert!(
        matches!(policy.next(&result, 0, 0.0), Next::Retry { after, .. } if after.as_secs() == 5)
    );
}

#[tokio::test]
async fn a_truncated_body_is_a_retryable_decode_error() {
    let server = MockServer::start().await;
    Mock::given(path(STATES_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string(&STATES[..120]))
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(settings(&server)).expect("client");

    let error = client
        .poll()
        .await
        .expect_err("half a body does not decode");

    assert!(matches!(error, Error::DecodeResponse { .. }), "{error:?}");
    assert!(error.is_retryable());
    let chain = producer::error_chain(&error);
    assert!(
        chain.contains("not an OpenSky /api/states/all response"),
        "{chain}"
    );
    assert_eq!(
        chain.matches("EOF while parsing").count(),
        1,
        "said once: {chain}"
    );
}

#[tokio::test]
async fn an_unreachable_opensky_is_a_retryable_unreachable_error() {
    let settings = OpenSkySettings {
        // Nothing listens on port 1 of the loopback interface.
        api_url: "http://127.0.0.1:1/api".into(),
        bbox: None,
        extended: false,
        credentials: None,
        request_timeout: Duration::from_secs(5),
    };
    let mut client = OpenSkyClient::new(settings).expect("client");

    let error = client.poll().await.expect_err("connection refused");

    assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert!(
        error.to_string().contains("OpenSky is unreachable"),
        "{error}"
    );
}

#[tokio::test]
async fn a_slow_answer_is_a_retryable_timeout() {
    let server = MockServer::start().await;
    Mock::given(path(STATES_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(STATES)
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(OpenSkySettings {
        request_timeout: Duration::from_millis(200),
        ..settings(&server)
    })
    .expect("client");

    let error = client.poll().await.expect_err("too slow");

    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_404_is_retried_at_the_backoff_and_names_its_fix() {
    let server = MockServer::start().await;
    let mut client = OpenSkyClient::new(settings(&server)).expect("client");

    let error = client.poll().await.expect_err("nothing is mounted");

    assert!(
        matches!(error, Error::Rejected { status: 404, .. }),
        "{error:?}"
    );
    assert!(
        error.is_retryable(),
        "the live producer never exits on an answer"
    );
    assert_eq!(error.cause().as_deref(), Some("http_404"));
    assert!(error.fix().contains("OPENSKY_API_URL"), "{}", error.fix());
    assert_eq!(
        RetryPolicy::new(Duration::from_secs(10)).next(&Err(error), 0, 0.0),
        Next::Retry {
            after: Duration::from_secs(5),
            attempt: 1
        }
    );
}

#[tokio::test]
async fn a_401_fetches_a_fresh_token_and_the_retried_request_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(token("first-token", 1800))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(token("second-token", 1800))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(path(STATES_PATH))
        .and(header("authorization", "Bearer first-token"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    Mock::given(path(STATES_PATH))
        .and(header("authorization", "Bearer second-token"))
        .respond_with(ResponseTemplate::new(200).set_body_string(STATES))
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(authenticated(&server)).expect("client");

    let snapshot = snapshot(client.poll().await.expect("the retry succeeds"));

    assert_eq!(snapshot.records.len(), 2);
    assert_eq!(
        requests_to(&server, TOKEN_PATH).await.len(),
        2,
        "a fresh token was fetched"
    );
    let polls = requests_to(&server, STATES_PATH).await;
    let bearers: Vec<_> = polls.iter().map(bearer).collect();
    assert_eq!(
        bearers,
        [
            Some("Bearer first-token".to_owned()),
            Some("Bearer second-token".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_second_401_with_a_fresh_token_is_a_retryable_error_not_a_loop() {
    let server = MockServer::start().await;
    Mock::given(path(TOKEN_PATH))
        .respond_with(token("some-token", 1800))
        .mount(&server)
        .await;
    Mock::given(path(STATES_PATH))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(authenticated(&server)).expect("client");

    let error = client.poll().await.expect_err("401 twice");

    assert!(matches!(error, Error::Unauthorized { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(
        requests_to(&server, STATES_PATH).await.len(),
        2,
        "retried exactly once"
    );
    assert_eq!(requests_to(&server, TOKEN_PATH).await.len(), 2);
}

#[tokio::test]
async fn the_token_request_is_a_client_credentials_form_post() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_id=alice-api-client"))
        .and(body_string_contains(format!(
            "client_secret={CLIENT_SECRET}"
        )))
        .respond_with(token("the-token", 1800))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(STATES_PATH))
        .and(header("authorization", "Bearer the-token"))
        .respond_with(ResponseTemplate::new(200).set_body_string(STATES))
        .expect(1)
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(authenticated(&server)).expect("client");

    client.poll().await.expect("authenticated poll");

    let debug = format!("{client:?}");
    assert!(!debug.contains(CLIENT_SECRET), "{debug}");
    assert!(!debug.contains("the-token"), "{debug}");
}

#[tokio::test]
async fn a_valid_token_is_reused_across_polls() {
    let server = MockServer::start().await;
    Mock::given(path(TOKEN_PATH))
        .respond_with(token("long-lived", 1800))
        .mount(&server)
        .await;
    Mock::given(path(STATES_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string(STATES))
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(authenticated(&server)).expect("client");

    for _ in 0..3 {
        client.poll().await.expect("poll");
    }

    assert_eq!(requests_to(&server, TOKEN_PATH).await.len(), 1);
}

#[tokio::test]
async fn a_token_within_a_minute_of_expiry_is_refreshed_before_the_next_request() {
    let server = MockServer::start().await;
    // 60 s is exactly the refresh margin: the token is still valid for a minute, but
    // a request made with it could outlive it, so the next poll fetches another.
    Mock::given(path(TOKEN_PATH))
        .respond_with(token("short-lived", 60))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path(TOKEN_PATH))
        .respond_with(token("replacement", 1800))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(path(STATES_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string(STATES))
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(authenticated(&server)).expect("client");

    client.poll().await.expect("first poll");
    client.poll().await.expect("second poll");
    client.poll().await.expect("third poll");

    assert_eq!(requests_to(&server, TOKEN_PATH).await.len(), 2);
    let bearers: Vec<_> = requests_to(&server, STATES_PATH)
        .await
        .iter()
        .map(bearer)
        .collect();
    assert_eq!(
        bearers,
        [
            Some("Bearer short-lived".to_owned()),
            Some("Bearer replacement".to_owned()),
            Some("Bearer replacement".to_owned()),
        ],
        "no request ever saw a 401: the token was replaced before it expired"
    );
}

#[tokio::test]
async fn rejected_credentials_are_an_error_naming_the_client_id_but_not_the_secret() {
    let server = MockServer::start().await;
    Mock::given(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "error": "unauthorized_client",
            "error_description": "Invalid client or Invalid client credentials",
        })))
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(authenticated(&server)).expect("client");

    let error = client.poll().await.expect_err("bad credentials");

    assert!(
        matches!(error, Error::CredentialsRejected { status: 401, .. }),
        "{error:?}"
    );
    assert!(
        error.is_retryable(),
        "an operator fixes the secret while the producer keeps trying"
    );
    assert_eq!(error.cause().as_deref(), Some("token_http_401"));
    assert!(
        error.fix().contains("OPENSKY_CLIENT_SECRET"),
        "{}",
        error.fix()
    );
    for shown in [producer::error_chain(&error), format!("{error:?}")] {
        assert!(shown.contains("alice-api-client"), "{shown}");
        assert!(!shown.contains(CLIENT_SECRET), "{shown}");
    }
    assert!(
        requests_to(&server, STATES_PATH).await.is_empty(),
        "no poll without a token"
    );
}

#[tokio::test]
async fn the_bbox_and_extended_become_the_query_string() {
    let server = MockServer::start().await;
    Mock::given(path(STATES_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string(STATES))
        .mount(&server)
        .await;
    let bbox: BoundingBox = "45.8389,5.9962,47.8229,10.5226".parse().expect("bbox");
    let mut client = OpenSkyClient::new(OpenSkySettings {
        bbox: Some(bbox),
        extended: true,
        ..settings(&server)
    })
    .expect("client");

    client.poll().await.expect("poll");

    let polls = requests_to(&server, STATES_PATH).await;
    assert_eq!(
        polls[0].url.query(),
        Some("lamin=45.8389&lomin=5.9962&lamax=47.8229&lomax=10.5226&extended=1")
    );
}

#[tokio::test]
async fn without_bbox_or_extended_there_is_no_query_string() {
    let server = MockServer::start().await;
    Mock::given(path(STATES_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string(STATES))
        .mount(&server)
        .await;
    let mut client = OpenSkyClient::new(settings(&server)).expect("client");

    client.poll().await.expect("poll");

    assert_eq!(requests_to(&server, STATES_PATH).await[0].url.query(), None);
}
