//! The page in a real browser: Debian's chromium, headless, driven by playwright-core
//! (`tests/browser/drive.cjs`), against velib-web reading a real broker.
//!
//! `#[ignore]`d because they need chromium and the driver's npm packages, which
//! `cargo xtask test` installs (`apt-get install chromium`, `npm ci`) before running them.
//! By hand:
//!
//! ```sh
//! apt-get install -y chromium && npm ci --prefix crates/velib-web/tests/browser
//! cargo test -p velib-web -- --include-ignored --nocapture browser
//! ```
//!
//! Each wait is on a condition in the page with a deadline; the only deadline that is part of
//! what is checked is the issue's own: a record produced to Kafka shows on the map and in the
//! feed within 2 s.

use crate::{
    Broker, Served, TIMEOUT, busy_station, city, now_ms, two_bikes_taken, unlocated_records,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use velib_web::Tiles;

/// Tiles from a host that does not exist; the driver also aborts every request that is not
/// to velib-web, so the page runs with its base map blocked.
const BLOCKED_TILES: &str = "http://tiles.invalid/{z}/{x}/{y}.png";

fn driver_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("VELIB_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask test`, which installs Debian's chromium, or \
         `apt-get install -y chromium` (or set VELIB_CHROMIUM)",
        path.display()
    );
    path
}

/// The browser, through the driver script.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    // Kept until the browser is closed: its profile lives there.
    _profile: TempDir,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    async fn launch() -> Browser {
        let dir = driver_dir();
        assert!(
            dir.join("node_modules/playwright-core").is_dir(),
            "the browser driver's npm packages are missing: run `cargo xtask test`, or \
             `npm ci --prefix {}`",
            dir.display()
        );
        // A fresh profile per browser, under the target directory.
        let profile = TempDir(
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(velib_testkit::unique_name("chromium-profile")),
        );
        std::fs::create_dir_all(&profile.0).unwrap();
        let mut child = Command::new("node")
            .arg(dir.join("drive.cjs"))
            .env("VELIB_CHROMIUM", chromium())
            .env("VELIB_PROFILE_DIR", &profile.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start node (Node.js is needed for the browser test)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut browser = Browser {
            child,
            stdin,
            stdout,
            _profile: profile,
        };
        let launched = browser.ask(json!({"cmd": "launch"})).await;
        assert_eq!(launched["ok"], true, "chromium starts: {launched}");
        browser
    }

    /// Sends one command to the driver and returns its answer.
    async fn ask(&mut self, command: Value) -> Value {
        self.send(&command).await;
        self.answer(&command).await
    }

    /// Sends one command; [`Browser::answer`] reads its answer.
    async fn send(&mut self, command: &Value) {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn answer(&mut self, command: &Value) -> Value {
        let answer = tokio::time::timeout(TIMEOUT * 3, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("the driver answers {command}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the driver exited during {command}"));
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer}: {e}"))
    }

    async fn close(mut self) {
        let closed = self.ask(json!({"cmd": "close"})).await;
        assert_eq!(closed["ok"], true, "{closed}");
        let status = tokio::time::timeout(TIMEOUT, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success());
    }
}

/// The errors the driver's `report` lists, but for the blocked requests' own.
fn page_errors(report: &Value) -> Vec<&str> {
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .filter(|e| !e.contains("ERR_BLOCKED_BY_CLIENT") && !e.contains("ERR_FAILED"))
        .collect()
}

/// Where the screenshot goes: the target directory, for a person to look at.
fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("velib-web-map.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and npm packages: run with `cargo xtask test`"]
async fn browser_map_updates_live_filters_and_escapes() {
    let broker = Broker::start();
    let mut stations = city(300);
    // A station whose text would run script if it were put in the page as HTML.
    let mut hostile = stations[0].clone();
    hostile.number = 99_999.into();
    hostile.name = r#"<img src=x onerror="window.__xss=1">"#.to_owned();
    hostile.address = r#"<script>window.__xss=2</script>"onerror=alert(1)"#.to_owned();
    hostile.position.lat += 0.001;
    hostile.status = velib_model::Status::Open;
    hostile.available_bikes = 4;
    hostile.available_bike_stands = 6;
    hostile.bike_stands = 10;
    stations.push(hostile.clone());
    broker.produce_stations(&stations).await;
    for (key, record) in unlocated_records("Valmont") {
        broker
            .produce(&broker.stations, &key, record.as_bytes())
            .await;
    }
    let tiles = Tiles::from_flag(BLOCKED_TILES, "tiles that never load").unwrap();
    let served = Served::start(&broker, tiles).await;
    served.wait_for_stations(stations.len() as u64 + 2).await;

    let mut browser = Browser::launch().await;
    let opened = browser
        .ask(json!({"cmd": "open", "url": served.url("/"), "expect": stations.len(), "timeout": 60_000}))
        .await;
    assert_eq!(opened["ok"], true, "every station drawn: {opened}");
    assert_eq!(
        opened["circles"],
        stations.len(),
        "one circle per located station"
    );
    assert_eq!(
        opened["offmap"], "2 stations without valid coordinates (not on the map)",
        "{opened}"
    );
    assert_eq!(opened["offmap_hidden"], false);
    println!(
        "browser: {} circles drawn {} ms after navigation",
        opened["circles"], opened["ms"]
    );

    // A record produced to Kafka: its circle and a feed line within 2 s.
    let before = busy_station(&stations, "Valmont");
    let after = two_bikes_taken(before);
    broker.produce_station(&after).await;
    let changed = browser
        .ask(json!({
            "cmd": "change",
            "key": after.key().to_string(),
            "bikes": after.available_bikes,
            "feed": format!("+2 {} (Valmont)", after.address),
            "timeout": 2_000,
        }))
        .await;
    assert_eq!(
        changed["ok"], true,
        "the change shows within 2 s: {changed}"
    );
    println!(
        "browser: a produced record reached the map and the feed in {} ms",
        changed["ms"]
    );

    // The same for the hostile station, so its address is in the feed too.
    let hostile_after = two_bikes_taken(&hostile);
    broker.produce_station(&hostile_after).await;
    let changed = browser
        .ask(json!({
            "cmd": "change",
            "key": hostile.key().to_string(),
            "bikes": hostile_after.available_bikes,
            "feed": format!("+2 {} (Valmont)", hostile.address),
            "timeout": 2_000,
        }))
        .await;
    assert_eq!(changed["ok"], true, "{changed}");

    // Station text is shown as text.
    let popup = browser
        .ask(json!({"cmd": "popup", "key": hostile.key().to_string(), "timeout": 10_000}))
        .await;
    assert_eq!(popup["ok"], true, "{popup}");
    assert_eq!(popup["name"], hostile.name.as_str());
    assert_eq!(popup["address"], hostile.address.as_str());
    assert_eq!(popup["injected"], 0, "no element made from station text");
    assert_eq!(popup["xss"], Value::Null, "no script ran");
    assert_eq!(popup["sparkline"], true, "two counts make a sparkline");
    // The simulated city counts bikes by type, out of service and returns.
    assert_eq!(
        popup["terms"],
        json!([
            "contract",
            "bikes",
            "e-bikes",
            "classic bikes",
            "bikes out of service",
            "free stands",
            "docks out of service",
            "capacity",
            "status",
            "last change"
        ])
    );
    assert_eq!(popup["values"][0], "Valmont");
    assert_eq!(
        popup["values"][1],
        hostile_after.available_bikes.to_string()
    );

    // The contract filter: only that contract's circles and feed lines.
    let port_aubry = stations
        .iter()
        .filter(|s| s.contract_name == "Port-Aubry")
        .count();
    let filtered = browser
        .ask(json!({"cmd": "filter", "contract": "Port-Aubry", "timeout": 10_000}))
        .await;
    assert_eq!(filtered["ok"], true, "{filtered}");
    assert_eq!(filtered["options"], json!(["", "Port-Aubry", "Valmont"]));
    assert_eq!(filtered["byContract"], json!({"Port-Aubry": port_aubry}));
    assert!(
        filtered["feed"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c == "Port-Aubry"),
        "{filtered}"
    );
    let valmont = browser
        .ask(json!({"cmd": "filter", "contract": "Valmont", "timeout": 10_000}))
        .await;
    assert_eq!(
        valmont["byContract"],
        json!({"Valmont": stations.len() - port_aubry})
    );
    assert_eq!(valmont["feed"], json!(["Valmont", "Valmont"]));

    // The screenshot with a popup open: the changed station, with its sparkline.
    let popup = browser
        .ask(json!({"cmd": "popup", "key": after.key().to_string(), "timeout": 10_000}))
        .await;
    assert_eq!(popup["address"], after.address.as_str(), "{popup}");
    let file = screenshot_path();
    let shot = browser
        .ask(json!({"cmd": "screenshot", "file": file}))
        .await;
    assert_eq!(shot["ok"], true, "{shot}");
    let png = std::fs::read(&file).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    println!("browser: screenshot at {}", file.display());

    let all = browser
        .ask(json!({"cmd": "filter", "contract": "", "timeout": 10_000}))
        .await;
    let total: u64 = all["byContract"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, stations.len() as u64);

    // Tiles were asked for and blocked, nothing else left the page, and nothing failed.
    let report = browser.ask(json!({"cmd": "report"})).await;
    let blocked = report["blocked"].as_array().unwrap();
    assert!(!blocked.is_empty(), "the page asked for tiles");
    assert!(
        blocked
            .iter()
            .all(|u| u.as_str().unwrap().starts_with("http://tiles.invalid/")),
        "only tiles are fetched from outside: {blocked:?}"
    );
    let errors = page_errors(&report);
    assert!(errors.is_empty(), "page errors: {errors:?}");

    // The server goes away: the page says so, reconnects to the next one on the same
    // address by itself, and is live again with what it reads.
    let addr = served.addr;
    served.stop().await;
    let down = browser
        .ask(json!({"cmd": "connection", "state": "reconnecting", "timeout": 30_000}))
        .await;
    assert_eq!(down["ok"], true, "{down}");
    let served = Served::start_on(&broker, None, addr).await;
    let again = two_bikes_taken(&after);
    broker.produce_station(&again).await;
    let changed = browser
        .ask(json!({
            "cmd": "change",
            "key": again.key().to_string(),
            "bikes": again.available_bikes,
            "feed": format!("+2 {} (Valmont)", again.address),
            "timeout": 30_000,
        }))
        .await;
    assert_eq!(changed["ok"], true, "after the restart: {changed}");
    let live = browser
        .ask(json!({"cmd": "connection", "state": "live", "timeout": 10_000}))
        .await;
    assert_eq!(live["ok"], true, "{live}");

    browser.close().await;
    served.stop().await;
}

/// The e-bike view: the popup's counts (e-bikes, classic bikes, bikes and docks out of service,
/// "takes no returns"), only those the feed gives; the switch colouring circles by e-bikes,
/// with a station whose feed does not count them drawn as not known rather than empty; the
/// totals' e-bikes per contract ("–" where no feed counts them); the monitor's e-bike event in
/// the feed, with hostile station text shown as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and npm packages: run with `cargo xtask test`"]
async fn browser_shows_e_bikes_out_of_service_and_returns() {
    use velib_model::{EmptinessKind, EmptyStationEvent, Status, VehicleCount, VehicleKind};
    let broker = Broker::start();
    let mut stations = city(60);
    // Port-Aubry's feed gives v1's counts only, as JCDecaux's v1 API does.
    for s in stations
        .iter_mut()
        .filter(|s| s.contract_name == "Port-Aubry")
    {
        s.bikes_by_type = None;
        s.bikes_out_of_service = None;
        s.docks_out_of_service = None;
        s.is_returning = None;
    }
    let valmont: Vec<usize> = (0..stations.len())
        .filter(|&i| stations[i].contract_name == "Valmont")
        .collect();
    let port_aubry = stations
        .iter()
        .position(|s| s.contract_name == "Port-Aubry")
        .unwrap();
    // Three classic bikes, no e-bike, broken bikes and docks, taking no returns; and a name
    // that would run script if the page took it for HTML.
    let drained = &mut stations[valmont[0]];
    drained.status = Status::Open;
    drained.name = r#"<img src=x onerror="window.__xss=3">"#.to_owned();
    drained.address = r#"<script>window.__xss=4</script> RUE"#.to_owned();
    drained.available_bikes = 3;
    drained.available_bike_stands = drained.bike_stands.saturating_sub(6);
    drained.bikes_by_type = Some(vec![
        VehicleCount {
            vehicle_type_id: "mechanical".into(),
            kind: VehicleKind::Classic,
            count: 3,
        },
        VehicleCount {
            vehicle_type_id: "electrical".into(),
            kind: VehicleKind::Electric,
            count: 0,
        },
    ]);
    drained.bikes_out_of_service = Some(2);
    drained.docks_out_of_service = Some(1);
    drained.is_returning = Some(false);
    let drained = drained.clone();
    let charged = &mut stations[valmont[1]];
    charged.status = Status::Open;
    charged.available_bikes = 4;
    charged.available_bike_stands = charged.bike_stands.saturating_sub(4);
    charged.bikes_by_type = Some(vec![VehicleCount {
        vehicle_type_id: "electrical".into(),
        kind: VehicleKind::Electric,
        count: 4,
    }]);
    let charged = charged.clone();
    let plain = &mut stations[port_aubry];
    plain.status = Status::Open;
    plain.available_bikes = 5;
    let plain = plain.clone();
    broker.produce_stations(&stations).await;
    let served = Served::start(&broker, Tiles::from_flag(BLOCKED_TILES, "").unwrap()).await;
    served.wait_for_stations(stations.len() as u64).await;

    let mut browser = Browser::launch().await;
    let opened = browser
        .ask(json!({"cmd": "open", "url": served.url("/"), "expect": stations.len(), "timeout": 60_000}))
        .await;
    assert_eq!(opened["ok"], true, "{opened}");

    let popup = browser
        .ask(json!({"cmd": "popup", "key": drained.key().to_string(), "timeout": 10_000}))
        .await;
    assert_eq!(popup["ok"], true, "{popup}");
    assert_eq!(popup["name"], drained.name.as_str());
    let rows: Vec<(String, String)> = popup["terms"]
        .as_array()
        .unwrap()
        .iter()
        .zip(popup["values"].as_array().unwrap())
        .map(|(t, v)| (t.as_str().unwrap().into(), v.as_str().unwrap().into()))
        .filter(|(t, _)| t != "last change")
        .collect();
    let expected: Vec<(String, String)> = [
        ("contract", "Valmont".to_owned()),
        ("bikes", "3".to_owned()),
        ("e-bikes", "0".to_owned()),
        ("classic bikes", "3".to_owned()),
        ("bikes out of service", "2".to_owned()),
        ("free stands", drained.available_bike_stands.to_string()),
        ("docks out of service", "1".to_owned()),
        ("capacity", drained.bike_stands.to_string()),
        ("status", "open, takes no returns".to_owned()),
    ]
    .into_iter()
    .map(|(t, v)| (t.to_owned(), v))
    .collect();
    assert_eq!(rows, expected);
    // A feed that does not give them: no row, rather than a 0.
    let popup = browser
        .ask(json!({"cmd": "popup", "key": plain.key().to_string(), "timeout": 10_000}))
        .await;
    assert_eq!(
        popup["terms"],
        json!([
            "contract",
            "bikes",
            "free stands",
            "capacity",
            "status",
            "last change"
        ])
    );
    assert_eq!(popup["values"][4], "open");

    // Coloured by bikes, the drained station has some; by e-bikes, none, and the station
    // whose feed does not count them is drawn as not known.
    let circle = |key: String| json!({"cmd": "circle", "key": key});
    let before = browser.ask(circle(drained.key().to_string())).await;
    assert_eq!(before["state"], "ok", "{before}");
    let switched = browser
        .ask(json!({"cmd": "colour", "ebikes": true, "timeout": 10_000}))
        .await;
    assert_eq!(switched["ok"], true, "{switched}");
    let mut seen = Vec::new();
    for s in [&drained, &charged, &plain] {
        let c = browser.ask(circle(s.key().to_string())).await;
        seen.push((c["state"].clone(), c["ebikes"].clone()));
    }
    assert_eq!(
        seen,
        [
            (json!("empty"), json!("0")),
            (json!("ok"), json!("4")),
            (json!("unknown"), Value::Null)
        ]
    );

    // Totals: e-bikes per contract, summed here from the records' per-type counts.
    let ebikes_of = |contract: &str| -> u32 {
        stations
            .iter()
            .filter(|s| s.contract_name == contract)
            .flat_map(|s| s.bikes_by_type.iter().flatten())
            .filter(|c| c.kind == VehicleKind::Electric)
            .map(|c| c.count)
            .sum()
    };
    let totals = browser.ask(json!({"cmd": "totals"})).await;
    assert_eq!(totals["head"][3], "e-bikes", "{totals}");
    let cell = |contract: &str| -> Value {
        totals["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == contract)
            .map(|r| r[3].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(cell("Valmont"), ebikes_of("Valmont").to_string());
    assert_eq!(
        cell("Port-Aubry"),
        "–",
        "not 0: no feed of the contract counts them"
    );
    assert_eq!(cell("all"), ebikes_of("Valmont").to_string());

    // The monitor's event for the last e-bike leaving, with the station's hostile text.
    let event = EmptyStationEvent::new(EmptinessKind::EbikesGone, &drained, now_ms());
    broker
        .produce(&broker.events, event.key.as_str(), &event.to_json())
        .await;
    let line = format!("no e-bikes: {} (Valmont)", drained.address);
    let fed = browser
        .ask(json!({"cmd": "feed", "text": line, "timeout": 10_000}))
        .await;
    assert_eq!(fed["ok"], true, "{fed}");
    let popup = browser
        .ask(json!({"cmd": "popup", "key": drained.key().to_string(), "timeout": 10_000}))
        .await;
    assert_eq!(popup["injected"], 0, "no element made from station text");
    assert_eq!(popup["xss"], Value::Null, "no script ran");

    // Back to all bikes.
    browser
        .ask(json!({"cmd": "colour", "ebikes": false, "timeout": 10_000}))
        .await;
    let after = browser.ask(circle(drained.key().to_string())).await;
    assert_eq!(after["state"], "ok", "{after}");
    let report = browser.ask(json!({"cmd": "report"})).await;
    let errors = page_errors(&report);
    assert!(errors.is_empty(), "page errors: {errors:?}");
    browser.close().await;
    served.stop().await;
}

/// Time to first render for 10,000 stations, printed, not asserted: speed is a measurement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and npm packages: run with `cargo xtask test`"]
async fn browser_ten_thousand_stations() {
    const STATIONS: usize = 10_000;
    let broker = Broker::start();
    let stations = city(STATIONS);
    for chunk in stations.chunks(1000) {
        broker.produce_stations(chunk).await;
    }
    let served = Served::start(&broker, Tiles::from_flag(BLOCKED_TILES, "").unwrap()).await;
    served.wait_for_stations(STATIONS as u64).await;

    let mut browser = Browser::launch().await;
    let opened = browser
        .ask(json!({"cmd": "open", "url": served.url("/"), "expect": STATIONS, "timeout": 120_000}))
        .await;
    assert_eq!(opened["ok"], true, "{opened}");
    assert_eq!(opened["circles"], STATIONS);
    println!(
        "browser: time to first render for {STATIONS} stations: {} ms (navigation to every circle drawn)",
        opened["ms"]
    );

    // Then a change still arrives (no deadline asserted here: the page is loaded).
    let before = busy_station(&stations, "Valmont");
    let after = two_bikes_taken(before);
    broker.produce_station(&after).await;
    let changed = browser
        .ask(json!({
            "cmd": "change",
            "key": after.key().to_string(),
            "bikes": after.available_bikes,
            "feed": format!("+2 {} (Valmont)", after.address),
            "timeout": 60_000,
        }))
        .await;
    assert_eq!(changed["ok"], true, "{changed}");
    println!(
        "browser: with {STATIONS} stations, a produced record reached the page in {} ms",
        changed["ms"]
    );

    // The rate of updates the page keeps up with: a burst of changes to distinct stations,
    // timed from just before they are produced to the last one shown.
    let burst: Vec<_> = stations
        .iter()
        .filter(|s| s.status == velib_model::Status::Open && s.available_bikes >= 2)
        .filter(|s| s.key() != after.key())
        .take(2_000)
        .map(two_bikes_taken)
        .collect();
    let expected: Vec<Value> = burst
        .iter()
        .map(|s| json!([s.key().to_string(), s.available_bikes]))
        .collect();
    let command = json!({"cmd": "changes", "expected": expected, "timeout": 120_000});
    browser.send(&command).await;
    broker.produce_stations(&burst).await;
    let shown = browser.answer(&command).await;
    assert_eq!(shown["ok"], true, "{shown}");
    let ms = shown["ms"].as_u64().unwrap().max(1);
    println!(
        "browser: {} changes produced at once were all on the map after {ms} ms ({} updates/s)",
        burst.len(),
        burst.len() as u64 * 1000 / ms
    );
    browser.close().await;
    served.stop().await;
}

/// A station's last 24 hours, from the statistics topic, in its popup after velib-web
/// restarts; its locked badge; the filter showing locked stations only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and npm packages: run with `cargo xtask test`"]
async fn browser_popup_shows_the_last_day_from_kafka_after_a_restart() {
    let broker = Broker::start();
    let stations = city(20);
    broker.produce_stations(&stations).await;
    let station = &stations[0];
    let key = station.key().to_string();
    let (stats, health, _, _) = crate::history::with_statistics(&broker, station).await;
    // A second station is degraded: its popup says so, and the locked filter leaves it out.
    let degraded = &stations[1];
    let change = velib_model::stats::StationHealthEvent {
        version: velib_model::stats::StationHealthEvent::VERSION,
        key: degraded.key(),
        health: velib_model::stats::Health::Degraded,
        previous: velib_model::stats::Health::Ok,
        since: crate::now_ms() - 3_600_000,
        decided_at: crate::now_ms(),
        reason: "12 of 20 docks out of service".to_owned(),
    };
    broker
        .produce(&health, degraded.key().as_str(), &change.to_json())
        .await;
    let served = crate::history::start(&broker, &stats, &health).await;
    served.wait_for_stations(stations.len() as u64).await;
    // velib-web restarts: what it serves now it has read from Kafka again.
    served.stop().await;
    let served = crate::history::start(&broker, &stats, &health).await;
    served.wait_for_stations(stations.len() as u64).await;
    crate::history::wait_for_history(&served, &key, 24, 24).await;

    let mut browser = Browser::launch().await;
    let opened = browser
        .ask(json!({"cmd": "open", "url": served.url("/"), "expect": stations.len(), "timeout": 60_000}))
        .await;
    assert_eq!(opened["ok"], true, "{opened}");
    let popup = browser
        .ask(json!({"cmd": "popup", "key": key, "timeout": 10_000}))
        .await;
    assert_eq!(popup["ok"], true, "{popup}");
    let history = browser
        .ask(json!({"cmd": "history", "key": key, "timeout": 30_000}))
        .await;
    assert_eq!(history["ok"], true, "{history}");
    // The default range, the 24 hours before now, holds the 24 latest windows, or 23 when
    // the oldest of them started just before it.
    let windows = history["windows"].as_u64().unwrap();
    assert!((23..=24).contains(&windows), "{history}");
    assert_eq!(history["series"], json!(["bikes", "rentals", "returns"]));
    // The latest window with activity ended two hours before the current hour.
    let activity = history["activity"].as_str().unwrap();
    assert!(
        activity.starts_with("last activity ") && activity.ends_with(" min ago"),
        "{history}"
    );
    let minutes: i64 = activity
        .trim_start_matches("last activity ")
        .trim_end_matches(" min ago")
        .parse()
        .unwrap();
    assert!((120..=180).contains(&minutes), "{history}");
    assert!(
        history["badge"]
            .as_str()
            .unwrap()
            .starts_with("locked since "),
        "{history}"
    );

    let popup = browser
        .ask(json!({"cmd": "popup", "key": degraded.key().to_string(), "timeout": 10_000}))
        .await;
    assert_eq!(popup["ok"], true, "{popup}");
    assert!(
        popup["badge"]
            .as_str()
            .is_some_and(|b| b.starts_with("many docks out of service since ")),
        "{popup}"
    );

    let locked = browser
        .ask(json!({"cmd": "lockedOnly", "checked": true, "expect": 1, "timeout": 10_000}))
        .await;
    assert_eq!(locked["ok"], true, "{locked}");
    assert_eq!(locked["keys"], json!([key]));
    let all = browser
        .ask(json!({"cmd": "lockedOnly", "checked": false, "expect": stations.len(), "timeout": 10_000}))
        .await;
    assert_eq!(all["ok"], true, "{all}");

    let report = browser.ask(json!({"cmd": "report"})).await;
    let errors = page_errors(&report);
    assert!(errors.is_empty(), "page errors: {errors:?}");
    browser.close().await;
    served.stop().await;
}
