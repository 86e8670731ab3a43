//! JCDecaux v1 against wiremock: the happy path, each error class, limits and redaction.

use crate::support::{KEY, assert_no_key, gzip_stored, options, raw_server, v1_station};
use serde_json::json;
use std::time::Duration;
use velib_model::{StationId, Status};
use velib_source::{JcDecauxSource, SourceError, SourceOptions, StationSource};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn source_for(server: &MockServer, contract: Option<&str>) -> JcDecauxSource {
    JcDecauxSource::new(&options(&server.uri()), contract.map(str::to_owned)).unwrap()
}

async fn fetch_error(
    template: ResponseTemplate,
    opts: impl FnOnce(&mut SourceOptions),
) -> SourceError {
    let server = MockServer::start().await;
    Mock::given(path("/vls/v1/stations"))
        .respond_with(template)
        .mount(&server)
        .await;
    let mut o = options(&server.uri());
    opts(&mut o);
    let mut source = JcDecauxSource::new(&o, Some("Lyon".into())).unwrap();
    let err = source.fetch().await.unwrap_err();
    assert_no_key(&err);
    err
}

#[tokio::test]
async fn reads_all_contracts_with_the_key_in_the_query() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/vls/v1/stations"))
        .and(query_param("apiKey", KEY))
        .and(query_param_is_missing("contract"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            v1_station("Lyon", 1001, 3),
            v1_station("Toulouse", 1001, 0),
        ])))
        .expect(2)
        .mount(&server)
        .await;
    let mut source = source_for(&server, None).await;
    assert!(source.describe().contains("all contracts"));
    assert_no_key(&source.describe());
    let snapshot = source.fetch().await.unwrap();
    assert_eq!(snapshot.stations.len(), 2);
    // Capitalised as in older payloads, keyed lower-case as the API spells contracts today.
    assert_eq!(snapshot.stations[0].key().as_str(), "lyon:1001");
    assert_eq!(snapshot.stations[1].key().as_str(), "toulouse:1001");
    assert!(
        snapshot
            .stations
            .iter()
            .all(|s| s.snapshot_at == Some(snapshot.taken_at)),
        "a v1 poll is its own snapshot"
    );
    assert_eq!(snapshot.stations[0].available_bikes, 3);
    assert_eq!(snapshot.stations[0].status, Status::Open);
    assert!(snapshot.taken_at > 1_700_000_000_000);
    // A second poll goes through the same source (and client).
    source.fetch().await.unwrap();
    assert_eq!(source.skipped_records(), 0);
}

#[tokio::test]
async fn sends_the_contract_when_given() {
    let server = MockServer::start().await;
    Mock::given(path("/vls/v1/stations"))
        .and(query_param("contract", "Lyon"))
        .and(query_param("apiKey", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([v1_station("Lyon", 7, 1)])))
        .expect(1)
        .mount(&server)
        .await;
    let mut source = source_for(&server, Some("Lyon")).await;
    assert!(
        source.describe().contains("(contract Lyon)"),
        "{}",
        source.describe()
    );
    let snapshot = source.fetch().await.unwrap();
    assert_eq!(snapshot.stations[0].number, StationId::Number(7));
}

#[tokio::test]
async fn keeps_a_base_url_path_prefix() {
    let server = MockServer::start().await;
    Mock::given(path("/proxy/jcd/vls/v1/stations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let o = options(&format!("{}/proxy/jcd", server.uri()));
    let mut source = JcDecauxSource::new(&o, None).unwrap();
    assert!(source.fetch().await.unwrap().stations.is_empty());
}

#[tokio::test]
async fn skips_and_counts_malformed_records() {
    let server = MockServer::start().await;
    let mut wrong_type = v1_station("Lyon", 2, 1);
    wrong_type["available_bikes"] = json!("lots");
    let mut missing = v1_station("Lyon", 3, 1);
    missing.as_object_mut().unwrap().remove("status");
    Mock::given(path("/vls/v1/stations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            v1_station("Lyon", 1, 1),
            wrong_type,
            missing,
            42,
            v1_station("Lyon", 4, 1),
        ])))
        .mount(&server)
        .await;
    let mut source = source_for(&server, None).await;
    let snapshot = source.fetch().await.unwrap();
    let numbers: Vec<_> = snapshot
        .stations
        .iter()
        .map(|s| s.number.to_string())
        .collect();
    assert_eq!(numbers, ["1", "4"]);
    assert_eq!(source.skipped_records(), 3);
    source.fetch().await.unwrap();
    assert_eq!(
        source.skipped_records(),
        6,
        "the counter accumulates across polls"
    );
}

#[tokio::test]
async fn refused_key_is_a_permanent_config_error_without_the_key() {
    for status in [401, 403] {
        let err = fetch_error(
            ResponseTemplate::new(status).set_body_string(format!("bad key {KEY}")),
            |_| {},
        )
        .await;
        assert_eq!(err.class(), "config");
        assert!(err.is_permanent());
        let text = err.to_string();
        assert!(text.contains("the JCDecaux API key was refused"), "{text}");
        assert!(text.contains("JCDECAUX_API_KEY"), "{text}");
        assert!(text.contains("apiKey=REDACTED"), "{text}");
    }
}

#[tokio::test]
async fn unknown_contract_is_a_config_error() {
    let err = fetch_error(ResponseTemplate::new(404), |_| {}).await;
    assert_eq!(err.class(), "config");
    assert!(err.is_permanent());
}

#[tokio::test]
async fn server_errors_are_transient() {
    for status in [500, 502, 504] {
        let err = fetch_error(ResponseTemplate::new(status), |_| {}).await;
        assert_eq!(err.class(), "transient", "{status}");
        assert!(!err.is_permanent());
        assert_eq!(err.retry_after(), None);
    }
}

#[tokio::test]
async fn unavailable_and_rate_limited_honour_retry_after() {
    let err = fetch_error(
        ResponseTemplate::new(503).insert_header("Retry-After", "30"),
        |_| {},
    )
    .await;
    assert_eq!(err.class(), "transient");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));

    let err = fetch_error(
        ResponseTemplate::new(429).insert_header("Retry-After", "120"),
        |_| {},
    )
    .await;
    assert_eq!(err.class(), "rate_limited");
    assert!(!err.is_permanent());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    let mut backoff = velib_source::Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
    assert!(backoff.next_delay(&err) >= Duration::from_secs(120));

    let err = fetch_error(ResponseTemplate::new(429), |_| {}).await;
    assert_eq!(err.retry_after(), None);
}

#[tokio::test]
async fn slow_responses_time_out() {
    let err = fetch_error(
        ResponseTemplate::new(200)
            .set_body_json(json!([]))
            .set_delay(Duration::from_secs(30)),
        |o| o.request_timeout = Duration::from_millis(200),
    )
    .await;
    assert_eq!(err.class(), "timeout");
    assert!(!err.is_permanent());
}

#[tokio::test]
async fn oversized_declared_body_is_refused() {
    let big: Vec<_> = (0..200).map(|n| v1_station("Lyon", n, 1)).collect();
    let err = fetch_error(ResponseTemplate::new(200).set_body_json(big), |o| {
        o.max_body_bytes = 4096
    })
    .await;
    assert_eq!(err.class(), "too_large");
    assert!(err.to_string().contains("4096"), "{err}");
}

#[tokio::test]
async fn oversized_streamed_body_is_cut_off() {
    // Chunked, so there is no Content-Length to check up front: the cap must hold while
    // streaming.
    let chunk = format!("{:x}\r\n{}\r\n", 1000, "x".repeat(1000));
    let mut response =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..20 {
        response.extend_from_slice(chunk.as_bytes());
    }
    response.extend_from_slice(b"0\r\n\r\n");
    let base = raw_server(response).await;
    let mut o = options(&base);
    o.max_body_bytes = 5_000;
    let mut source = JcDecauxSource::new(&o, None).unwrap();
    let err = source.fetch().await.unwrap_err();
    assert_eq!(err.class(), "too_large", "{err}");
    assert_no_key(&err);
}

#[tokio::test]
async fn gzip_bodies_are_decoded_and_capped_after_decoding() {
    let body = serde_json::to_vec(&json!([v1_station("Lyon", 1, 2)])).unwrap();
    let template = || {
        ResponseTemplate::new(200)
            .insert_header("content-encoding", "gzip")
            .insert_header("content-type", "application/json")
            .set_body_bytes(gzip_stored(&body))
    };
    let server = MockServer::start().await;
    Mock::given(path("/vls/v1/stations"))
        .respond_with(template())
        .mount(&server)
        .await;
    let mut source = source_for(&server, None).await;
    assert_eq!(source.fetch().await.unwrap().stations.len(), 1);

    let err = fetch_error(template(), |o| o.max_body_bytes = body.len() - 1).await;
    assert_eq!(err.class(), "too_large");
}

#[tokio::test]
async fn truncated_json_is_malformed_and_says_what_arrived() {
    let full = serde_json::to_string(&json!([v1_station("Lyon", 1, 2)])).unwrap();
    let err = fetch_error(
        ResponseTemplate::new(200).set_body_raw(&full[..full.len() / 2], "application/json"),
        |_| {},
    )
    .await;
    assert_eq!(err.class(), "malformed");
    let text = err.to_string();
    assert!(text.contains("EOF"), "{text}");
    assert!(text.contains("application/json"), "{text}");
    assert!(text.contains("[{"), "{text}");
}

#[tokio::test]
async fn body_cut_short_by_the_connection_is_transient() {
    let base = raw_server(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n[{\"number\": 1"
            .to_vec(),
    )
    .await;
    let mut source = JcDecauxSource::new(&options(&base), None).unwrap();
    let err = source.fetch().await.unwrap_err();
    assert_eq!(err.class(), "transient", "{err}");
    assert_no_key(&err);
}

#[tokio::test]
async fn non_json_body_reports_content_type_and_first_bytes() {
    let err = fetch_error(
        ResponseTemplate::new(200).set_body_raw(
            format!("<html><body>Maintenance, key {KEY}</body></html>"),
            "text/html; charset=utf-8",
        ),
        |_| {},
    )
    .await;
    assert_eq!(err.class(), "malformed");
    let text = err.to_string();
    assert!(text.contains("text/html"), "{text}");
    assert!(text.contains("<html><body>Maintenance"), "{text}");
    assert!(
        text.contains("REDACTED"),
        "the echoed key is scrubbed: {text}"
    );
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_malformed() {
    let err = fetch_error(
        ResponseTemplate::new(200).set_body_json(json!({"error": "Unknown contract"})),
        |_| {},
    )
    .await;
    assert_eq!(err.class(), "malformed");
    assert!(err.to_string().contains("Unknown contract"), "{err}");

    let err = fetch_error(ResponseTemplate::new(200).set_body_json(json!(12)), |_| {}).await;
    assert!(err.to_string().contains("got JSON number"), "{err}");
}

#[tokio::test]
async fn connection_refused_is_transient_and_redacted() {
    // Bind, note the port, close: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut source = JcDecauxSource::new(&options(&base), Some("Lyon".into())).unwrap();
    let err = source.fetch().await.unwrap_err();
    assert_eq!(err.class(), "transient", "{err}");
    assert!(err.to_string().contains("apiKey=REDACTED"), "{err}");
    assert_no_key(&err);
}

#[tokio::test]
async fn missing_key_and_bad_base_url_are_config_errors() {
    let mut o = options("http://127.0.0.1:9");
    o.jcdecaux_api_key = None;
    let err = JcDecauxSource::new(&o, None).unwrap_err();
    assert_eq!(err.class(), "config");
    assert!(err.to_string().contains("JCDECAUX_API_KEY"), "{err}");

    let mut o = options("ftp://example.org");
    let err = JcDecauxSource::new(&o, None).unwrap_err();
    assert!(err.is_permanent());
    assert!(err.to_string().contains("--jcdecaux-base-url"), "{err}");
    o.jcdecaux_base_url = "not a url".into();
    assert_eq!(JcDecauxSource::new(&o, None).unwrap_err().class(), "config");
}

#[tokio::test]
async fn debug_output_hides_the_key() {
    let o = options("http://127.0.0.1:9");
    assert!(!format!("{o:?}").contains("s3cret"));
    let source = JcDecauxSource::new(&o, Some("Lyon".into())).unwrap();
    let debug = format!("{source:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
}

#[tokio::test]
async fn a_station_that_is_not_json_costs_only_itself() {
    // Invalid UTF-8 in an address, a number out of range, NaN, a value nested 100,000 deep:
    // each makes the whole response unreadable to a JSON parser, and each is one skipped
    // station here.
    let good = |n| serde_json::to_vec(&v1_station("Lyon", n, 1)).unwrap();
    let deep = format!(
        r#"{{"number": 7, "x": {}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let poison: [&[u8]; 4] = [
        b"{\"number\": 5, \"address\": \"12 rue \xff\xfe\"}",
        br#"{"number": 6, "available_bikes": 1e400}"#,
        br#"{"number": 7, "position": {"lat": NaN, "lng": 4.8}}"#,
        deep.as_bytes(),
    ];
    let mut body = b"[".to_vec();
    body.extend(good(1));
    for p in poison {
        body.extend(b", ");
        body.extend(p);
    }
    body.extend(b", ");
    body.extend(good(2));
    body.extend(b"]");
    let server = MockServer::start().await;
    Mock::given(path("/vls/v1/stations"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .mount(&server)
        .await;
    let mut source = source_for(&server, None).await;
    let snapshot = source.fetch().await.unwrap();
    let numbers: Vec<_> = snapshot
        .stations
        .iter()
        .map(|s| s.number.to_string())
        .collect();
    assert_eq!(numbers, ["1", "2"]);
    assert_eq!(source.skipped_records(), 4);
}
