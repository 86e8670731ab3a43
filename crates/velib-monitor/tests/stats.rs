//! `--stats` end to end, on Apache Kafka: the real day served as api.cyclocity.fr serves it, the
//! producer binary polling it, and a monitor binary with `--stats` publishing closed hourly
//! windows to a statistics topic. What a read_committed reader finds there must be exactly the
//! windows of the independent count over the files (`velib_testkit::real_day`), each once:
//! undisturbed, and with the monitor SIGKILLed in the middle of the day and restarted (its open
//! windows then come back from the state changelog, and nothing published is published again).
//! Then the velib-web binary, started on those topics, serves each station's history: the
//! same windows again, read back from Kafka; and velib-alerts mails each locked or degraded
//! station once.

use crate::TIMEOUT;
use crate::real_day::{Version, serve_day};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use tokio::process::Command;
use velib_model::{StationHealthEvent, StationStats};
use velib_testkit::child::Child;
use velib_testkit::real_day::{
    Expected, assert_windows, expected_windows, histories, load_day, set_aside,
};
use velib_testkit::{Process, admin_create_topic, kafka_bootstrap, unique_name, wait_for};

/// One group's topics (the stations topic is shared).
struct Topics {
    stations: String,
    state: String,
    stats: String,
    health: String,
}

impl Topics {
    /// Fresh state, statistics and health topics beside `stations`.
    async fn create(bootstrap: &str, stations: &str) -> Topics {
        let topics = Topics {
            stations: stations.to_owned(),
            state: unique_name("velib-monitor-state"),
            stats: unique_name("velib-station-stats"),
            health: unique_name("velib-station-health"),
        };
        for (topic, partitions) in [(&topics.state, 10), (&topics.stats, 3), (&topics.health, 3)] {
            admin_create_topic(bootstrap, topic, partitions)
                .await
                .unwrap();
        }
        topics
    }
}

/// A monitor of the day with `--stats`, always the same instance of the same group, so that a
/// restarted one fences its predecessor and restores its state.
fn monitor(bootstrap: &str, group: &str, topics: &Topics) -> Process {
    Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_velib-monitor"))
            .args(["--bootstrap-servers", bootstrap, "--group-id", group])
            .args(["--topic", &topics.stations, "--state-topic", &topics.state])
            .args(["--no-dlq", "--no-events", "--instance-id", "stats-1"])
            .args(["--stats", "--stats-topic", &topics.stats])
            .args(["--health-topic", &topics.health])
            .args(["-X", "auto.offset.reset=earliest"])
            .env("RUST_LOG", "warn"),
    )
}

/// The windows the monitor must publish: the independent count, for the stations the producer
/// publishes (it sets test and workshop stations aside).
fn expected() -> BTreeMap<(String, i64), Expected> {
    let day = load_day();
    let aside: Vec<String> = day
        .iter()
        .flat_map(|c| {
            set_aside(&c.information)
                .into_iter()
                .map(move |id| format!("{}:{id}", c.slug))
        })
        .collect();
    let mut histories = histories(&day);
    histories.retain(|key, _| !aside.contains(key));
    expected_windows(&histories, 3_600_000, 0)
}

/// The day played once, read by two groups side by side: one undisturbed, one whose monitor
/// is SIGKILLed half-way and restarted. Both must publish exactly the independent count's
/// windows, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka (Java >= 17, Maven): run `cargo xtask test`"]
async fn the_real_day_s_hourly_statistics_are_published_exactly_once_killed_or_not() {
    let _alone = crate::alone().await;
    let day = load_day();
    let expected = expected();
    assert!(expected.len() > 10_000, "{} windows", expected.len());
    let (server, served) = serve_day(&day, Version::V3).await;
    let bootstrap = kafka_bootstrap();
    let stations = unique_name("velib-stations");
    admin_create_topic(&bootstrap, &stations, 10).await.unwrap();
    let (calm, killed) = (
        Topics::create(&bootstrap, &stations).await,
        Topics::create(&bootstrap, &stations).await,
    );
    let (calm_group, killed_group) = (
        unique_name("velib-monitor-stats"),
        unique_name("velib-monitor-stats-killed"),
    );
    let calm_monitor = monitor(&bootstrap, &calm_group, &calm);
    let mut killed_monitor = monitor(&bootstrap, &killed_group, &killed);
    let producer = crate::real_day::producer(&day, &server.uri(), &bootstrap, &stations);
    let snapshots = day[0].statuses.len();
    let read_past = |n: usize| {
        let served = &served;
        move || async move {
            served
                .iter()
                .all(|s| s.load(Ordering::SeqCst) > n)
                .then_some(())
        }
    };
    // Half the day in: the monitor has windows open (and closed ones published), and dies
    // without a word; its successor restores the open ones from the changelog.
    wait_for("half the day", TIMEOUT * 3, read_past(snapshots / 2)).await;
    wait_for("the monitor to publish windows", TIMEOUT, || async {
        let published = velib_testkit::read_until_quiet(
            &bootstrap,
            &killed.stats,
            std::time::Duration::from_millis(500),
        )
        .await;
        (!published.is_empty()).then_some(())
    })
    .await;
    killed_monitor.kill().await;
    killed_monitor = monitor(&bootstrap, &killed_group, &killed);
    wait_for(
        "the producer to read every snapshot",
        TIMEOUT * 3,
        read_past(snapshots),
    )
    .await;
    assert!(
        producer.terminate().await.success(),
        "the producer delivers everything"
    );
    // The health changes of the last group judged: the killed one.
    let mut changes = Vec::new();
    for (what, group, topics, running) in [
        ("undisturbed", &calm_group, &calm, calm_monitor),
        (
            "killed and restarted",
            &killed_group,
            &killed,
            killed_monitor,
        ),
    ] {
        wait_for(
            "the group to commit the whole topic",
            TIMEOUT * 2,
            || async { velib_testkit::group_caught_up(&bootstrap, group, &stations).then_some(()) },
        )
        .await;
        assert!(running.terminate().await.success(), "{what}");
        changes = judge(&bootstrap, topics, &expected, what).await;
    }
    served_history(&bootstrap, &killed, &expected).await;
    mailed_health(&bootstrap, &killed, &changes).await;
}

/// velib-web on `topics`: once it has read the statistics topic, every station's history (JSON,
/// and CSV for one) holds exactly the expected windows, in order.
async fn served_history(
    bootstrap: &str,
    topics: &Topics,
    expected: &BTreeMap<(String, i64), Expected>,
) {
    let web = Child::spawn(
        tokio::process::Command::new(sibling("velib-web"))
            .args([
                "--bootstrap-servers",
                bootstrap,
                "--http-addr",
                "127.0.0.1:0",
            ])
            .args(["--topic", &topics.stations, "--no-events"])
            .args([
                "--stats-topic",
                &topics.stats,
                "--health-topic",
                &topics.health,
            ])
            .env("RUST_LOG", "warn"),
    );
    // "velib-web: http://127.0.0.1:PORT/"
    let base = wait_for("velib-web to listen", TIMEOUT, || async {
        let out = web.stdout();
        let first = out.first()?.strip_prefix("velib-web: ")?;
        Some(first.trim_end_matches('/').to_owned())
    })
    .await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move {
            let response = http.get(&url).send().await.ok()?;
            (response.status() == 200).then_some(())?;
            response.text().await.ok()
        }
    };
    wait_for("velib-web to read every window", TIMEOUT, || async {
        let health: serde_json::Value = serde_json::from_str(&get("/health".into()).await?).ok()?;
        (health["history_windows"].as_u64()? == expected.len() as u64).then_some(())
    })
    .await;
    let mut by_station: BTreeMap<&str, Vec<(i64, &Expected)>> = BTreeMap::new();
    for ((key, start), e) in expected {
        by_station.entry(key).or_default().push((*start, e));
    }
    let rfc3339 = velib_model::stats::rfc3339_utc;
    for (key, windows) in &by_station {
        let (from, to) = (windows[0].0, windows[windows.len() - 1].0 + 3_600_000);
        let path = format!(
            "/api/stations/{key}/history?from={}&to={}",
            rfc3339(from),
            rfc3339(to)
        );
        let body = get(path.clone())
            .await
            .unwrap_or_else(|| panic!("{path} answered"));
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let served: Vec<(i64, u64, u64, u64)> = body["windows"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: {body}"))
            .iter()
            .map(|w| {
                let n = |f: &str| {
                    w[f].as_u64()
                        .unwrap_or_else(|| panic!("{path}: {f} in {w}"))
                };
                (
                    w["window_start"].as_i64().unwrap(),
                    n("records"),
                    n("rentals"),
                    n("returns"),
                )
            })
            .collect();
        let wanted: Vec<(i64, u64, u64, u64)> = windows
            .iter()
            .map(|(start, e)| {
                let n = |v: u32| u64::from(v);
                (*start, n(e.records), n(e.rentals), n(e.returns))
            })
            .collect();
        assert_eq!(served, wanted, "{path}");
    }
    // The same rows as CSV, for the first station: a header and one line per window.
    let (key, windows) = by_station.iter().next().unwrap();
    let csv = get(format!(
        "/api/stations/{key}/history?from={}&to={}&format=csv",
        rfc3339(windows[0].0),
        rfc3339(windows[windows.len() - 1].0 + 3_600_000)
    ))
    .await
    .expect("the CSV history");
    assert_eq!(csv.lines().count(), windows.len() + 1, "{csv}");
    println!(
        "velib-web served the history of {} stations, {} windows, as published",
        by_station.len(),
        expected.len()
    );
}

/// A binary built beside the monitor's.
fn sibling(name: &str) -> std::path::PathBuf {
    velib_testkit::sibling_binary(env!("CARGO_BIN_EXE_velib-monitor"), name)
}

/// velib-alerts in dry run on `topics`' health changes, watching every contract of the day,
/// locked and degraded asked for: it mails each change to one of those once, and nothing
/// else (no recovery: not asked for).
async fn mailed_health(bootstrap: &str, topics: &Topics, changes: &[StationHealthEvent]) {
    let mut wanted: Vec<(String, String)> = changes
        .iter()
        .filter_map(|c| {
            let health = match c.health {
                velib_model::Health::Locked => "locked",
                velib_model::Health::Degraded => "degraded",
                velib_model::Health::Ok => return None,
            };
            Some((c.key.to_string(), health.to_owned()))
        })
        .collect();
    wanted.sort();
    assert!(
        !wanted.is_empty(),
        "the day has locked or degraded stations"
    );
    let events = unique_name("velib-empty-stations");
    admin_create_topic(bootstrap, &events, 1).await.unwrap();
    let mut alerts = tokio::process::Command::new(sibling("velib-alerts"));
    alerts
        .args([
            "--bootstrap-servers",
            bootstrap,
            "--dry-run",
            "--max-age",
            "0",
        ])
        .args(["--topic", &events, "--health-topic", &topics.health])
        .args([
            "--group",
            &unique_name("velib-alerts"),
            "--alert-on",
            "locked,degraded",
        ])
        .args(["--to", "ops@velib.invalid", "--from", "velib@velib.invalid"])
        .env("RUST_LOG", "warn");
    for city in load_day() {
        alerts.args(["--contract", &city.slug]);
    }
    let alerts = Child::spawn(&mut alerts);
    // Each mail's "Key:" and "Health:" lines.
    let mailed = |out: &[String]| -> Vec<(String, String)> {
        let field = |l: &str, name: &str| l.strip_prefix(name).map(|v| v.trim().to_owned());
        let keys = out.iter().filter_map(|l| field(l, "Key:"));
        let healths = out.iter().filter_map(|l| {
            field(l, "Health:").map(|h| h.split(' ').next().unwrap_or("").to_owned())
        });
        let mut pairs: Vec<(String, String)> = keys.zip(healths).collect();
        pairs.sort();
        pairs
    };
    wait_for("a mail per health change", TIMEOUT, || async {
        (mailed(&alerts.stdout()).len() >= wanted.len()).then_some(())
    })
    .await;
    let mut alerts = alerts;
    alerts.signal("TERM").await;
    assert!(alerts.wait(TIMEOUT).await.success());
    assert_eq!(mailed(&alerts.stdout()), wanted);
    println!(
        "velib-alerts mailed the {} locked and degraded changes, each once",
        wanted.len()
    );
}

/// What a read_committed reader finds on `topics`' statistics and health topics: exactly the
/// expected windows, and no health change twice.
async fn judge(
    bootstrap: &str,
    topics: &Topics,
    expected: &BTreeMap<(String, i64), Expected>,
    what: &str,
) -> Vec<StationHealthEvent> {
    let published = velib_testkit::read_until_quiet(
        bootstrap,
        &topics.stats,
        std::time::Duration::from_secs(3),
    )
    .await;
    let windows: Vec<StationStats> = published
        .iter()
        .map(|m| {
            use rdkafka::Message;
            let stats = StationStats::from_json(m.payload().unwrap()).unwrap();
            assert_eq!(m.key(), Some(stats.kafka_key().as_slice()));
            stats
        })
        .collect();
    let compared = assert_windows(expected, &windows);
    // Health changes: each once, whatever the crash.
    let health = velib_testkit::read_until_quiet(
        bootstrap,
        &topics.health,
        std::time::Duration::from_secs(1),
    )
    .await;
    let mut seen = std::collections::HashSet::new();
    let mut changes = Vec::new();
    for m in &health {
        use rdkafka::Message;
        let e = StationHealthEvent::from_json(m.payload().unwrap()).unwrap();
        assert!(
            seen.insert((e.key.to_string(), e.decided_at)),
            "{what}: health change twice: {e:?}"
        );
        changes.push(e);
    }
    println!(
        "{what}: {compared} windows and {} health changes published",
        seen.len()
    );
    changes
}

#[tokio::test]
async fn stats_at_least_once_are_refused_with_the_flag_to_use() {
    let output = Command::new(env!("CARGO_BIN_EXE_velib-monitor"))
        .args(["--stats", "--guarantee", "at-least-once"])
        .args(["--bootstrap-servers", &velib_testkit::unreachable_address()])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--stats needs --guarantee exactly-once"),
        "{stderr}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_velib-monitor"))
        .args(["--stats", "--window", "1h", "--grace", "2h"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("--grace"),
        "{stderr}"
    );
}
