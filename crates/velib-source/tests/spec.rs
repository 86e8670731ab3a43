//! Choosing a source from its argument, as the producer's `--source` does.

use crate::support::{KEY, TempFile, assert_no_key, options, v1_station};
use serde_json::json;
use velib_source::{AnySource, SourceSpec, StationSource};
use wiremock::matchers::{path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[tokio::test]
async fn every_spec_builds_a_working_source() {
    let server = MockServer::start().await;
    Mock::given(path("/vls/v1/stations"))
        .and(query_param("apiKey", KEY))
        .and(query_param("contract", "Lyon"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([v1_station("Lyon", 1, 1)])))
        .mount(&server)
        .await;
    let recording = TempFile::new(
        "spec.ndjson",
        &json!({"taken_at": 5, "stations": [v1_station("Lyon", 9, 1)]}).to_string(),
    );
    let mut o = options(&server.uri());
    o.replay_speed = 0.0;
    let cases = [
        ("jcdecaux:Lyon".to_owned(), "lyon:1"),
        (format!("replay:{}", recording.0.display()), "Lyon:9"),
        ("simulate:3".to_owned(), "Valmont:1"),
    ];
    for (arg, first_key) in cases {
        let spec: SourceSpec = arg.parse().unwrap();
        let mut source: AnySource = spec.build(&o).unwrap();
        assert_no_key(&source.describe());
        // The producer polls from a multi-threaded runtime: the future must be Send.
        let snapshot = assert_send(source.fetch()).await.unwrap();
        assert_eq!(snapshot.stations[0].key().as_str(), first_key, "{arg}");
        assert_eq!(source.skipped_records(), 0);
    }
}

#[tokio::test]
async fn jcdecaux_without_a_key_fails_to_build_and_says_why() {
    let mut o = options("http://127.0.0.1:9");
    o.jcdecaux_api_key = None;
    let err = "jcdecaux"
        .parse::<SourceSpec>()
        .unwrap()
        .build(&o)
        .unwrap_err();
    assert_eq!(err.class(), "config");
    assert!(err.to_string().contains("gbfs:<contract>"), "{err}");
    // The key-less default runs anyway.
    let mut fallback = SourceSpec::default_for(&o).build(&o).unwrap();
    assert!(!fallback.fetch().await.unwrap().stations.is_empty());
}
