//! The simulator through the public trait, as the producer uses it.

use velib_source::{SimulateConfig, SimulateSource, StationSource};

#[tokio::test]
async fn fetch_is_deterministic_and_advances_the_clock() {
    let cfg = SimulateConfig {
        seed: 2027,
        stations: 5_000,
        contracts: 5,
        start_ms: Some(1_800_000_000_000),
        ..SimulateConfig::default()
    };
    let mut a = SimulateSource::new(cfg.clone());
    let mut b = SimulateSource::new(cfg);
    assert!(a.describe().contains("5000 stations"), "{}", a.describe());
    let mut last = i64::MIN;
    for _ in 0..10 {
        let (sa, sb) = (a.fetch().await.unwrap(), b.fetch().await.unwrap());
        assert_eq!(sa, sb);
        assert!(sa.taken_at > last);
        last = sa.taken_at;
        assert!(
            sa.stations
                .iter()
                .all(|s| s.last_update.unwrap() <= sa.taken_at)
        );
    }
    assert_eq!(a.skipped_records(), 0);
}

#[test]
fn scales_to_a_hundred_thousand_stations() {
    // The million-station load is measured by benchmarks; this checks the shape holds at a size
    // a debug-build test can afford.
    let mut sim = SimulateSource::new(SimulateConfig {
        stations: 100_000,
        contracts: 7,
        ..SimulateConfig::default()
    });
    let total = sim.total_bikes();
    for _ in 0..5 {
        assert_eq!(sim.advance().stations.len(), 100_000);
    }
    assert_eq!(sim.total_bikes(), total);
}

/// The benchmark size. Ignored by default because a debug build takes seconds over it; run
/// with `cargo test -p velib-source --release -- --ignored million`.
#[test]
#[ignore]
fn a_million_stations() {
    let mut sim = SimulateSource::new(SimulateConfig {
        stations: 1_000_000,
        contracts: 10,
        ..SimulateConfig::default()
    });
    let total = sim.total_bikes();
    for _ in 0..10 {
        assert_eq!(sim.advance().stations.len(), 1_000_000);
    }
    assert_eq!(sim.next_snapshot().stations.len(), 1_000_000);
    assert_eq!(sim.total_bikes(), total);
}
