//! Events for the tests.

use std::time::{SystemTime, UNIX_EPOCH};
use velib_model::{EmptinessKind, EmptyStationEvent, Position, Station, StationId, Status};

pub const FROM: &str = "Velib alerts <alerts@velib.test>";
pub const TO: &str = "me@velib.test";

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A Lyon station event at `time` (epoch ms).
pub fn event(key: &str, kind: EmptinessKind, time: i64) -> EmptyStationEvent {
    let (contract, id) = key.split_once(':').unwrap();
    let station = Station {
        number: StationId::from_text(id),
        contract_name: contract.to_owned(),
        name: format!("{id} - PLACE BELLECOUR"),
        address: "Place Bellecour, 69002 Lyon".to_owned(),
        position: Position {
            lat: 45.7578,
            lng: 4.832,
        },
        banking: true,
        bonus: false,
        bike_stands: 20,
        available_bike_stands: 20,
        available_bikes: 0,
        status: Status::Open,
        last_update: Some(time),
    };
    EmptyStationEvent::new(kind, &station, time + 1_000)
}

pub fn empty(key: &str, time: i64) -> EmptyStationEvent {
    event(key, EmptinessKind::BecameEmpty, time)
}

pub fn back(key: &str, time: i64) -> EmptyStationEvent {
    event(key, EmptinessKind::NoLongerEmpty, time)
}

/// Sends `RUST_LOG`-filtered logs to the test's captured output (shown when a test fails).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("velib_alerts=debug")),
        )
        .with_test_writer()
        .try_init();
}
