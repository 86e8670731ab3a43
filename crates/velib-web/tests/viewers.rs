//! Many pages on the event stream at once, some of which never read: those are hung up once
//! they are more than the backlog behind, the others get every update, `/health` answers all
//! along, and a page that comes back starts from a fresh snapshot.

use crate::{Broker, Events, Served, TIMEOUT, busy_station, city, two_bikes_taken};
use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use velib_model::Station;

/// Big enough that one snapshot (about 300 bytes a station) is more than hyper's write buffer
/// and a small socket hold, so a page that reads nothing stops taking frames at once.
const STATIONS: usize = 3_000;
const READERS: usize = 8;
const SILENT: usize = 4;
const BACKLOG: usize = 10;

/// A page that asks for the event stream and then reads nothing, with a small receive buffer
/// so that the server's writes to it stop soon.
async fn silent_viewer(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: velib\r\n\r\n")
        .await
        .unwrap();
    stream
}

/// Reads what the server sent until it closes the connection; false if it stays open.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = vec![0; 64 * 1024];
    tokio::time::timeout(TIMEOUT, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .is_ok()
}

/// The `i`-th of a series of changes to `station`: its count of bikes goes down and up by one.
fn nudged(station: &Station, i: u32) -> Station {
    let mut next = station.clone();
    if i % 2 == 1 {
        next.available_bikes -= 1;
        next.available_bike_stands += 1;
    }
    next.last_update = Some(station.last_update.unwrap_or(0) + i64::from(i) * 1000);
    next
}

fn has_station(data: &Value, key: &str, bikes: u32) -> bool {
    data["stations"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["key"] == key && s["bikes"] == bikes))
}

/// A city of [`STATIONS`] on a fresh broker, served with pages hung up `backlog` updates
/// behind, once the server has read it all.
async fn city_served(backlog: usize) -> (Broker, Vec<Station>, Served) {
    let broker = Broker::start();
    let stations = city(STATIONS);
    for chunk in stations.chunks(1000) {
        broker.produce_stations(chunk).await;
    }
    let served = Served::start_with(&broker, "127.0.0.1:0".parse().unwrap(), |config| {
        config.tiles = None;
        config.viewer_backlog = backlog;
    })
    .await;
    served.wait_for_stations(STATIONS as u64).await;
    (broker, stations, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_do_not_read_are_hung_up_and_the_others_get_every_update() {
    let (broker, stations, served) = city_served(BACKLOG).await;

    // The change every reading page must see at the end, and a station to keep busy meanwhile.
    let last = two_bikes_taken(busy_station(&stations, "Valmont"));
    let last_key = last.key().to_string();
    let busy = busy_station(&stations, "Port-Aubry").clone();

    // Pages that read, each in a task of its own from its first byte to the last change.
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let url = served.url("/api/events");
            let (key, bikes) = (last_key.clone(), last.available_bikes);
            tokio::spawn(async move {
                let mut events = Events::open(&url).await;
                let (event, snapshot) = events.next().await;
                assert_eq!(event, "snapshot");
                assert_eq!(snapshot["stations"].as_array().unwrap().len(), STATIONS);
                events
                    .until(|event, data| event == "update" && has_station(data, &key, bikes))
                    .await;
            })
        })
        .collect();
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        silent.push(silent_viewer(served.addr).await);
    }
    velib_testkit::wait_for("every page to be connected", TIMEOUT, || async {
        (served.health().await["viewers"] == READERS + SILENT).then_some(())
    })
    .await;

    // Changes every round, so an update goes out every push: the pages that read nothing fall
    // behind and are hung up, and `/health` answers all the while.
    let mut round = 0;
    let mut answers = 0;
    velib_testkit::wait_for("the silent pages to be hung up", TIMEOUT, || {
        round += 1;
        let change = nudged(&busy, round);
        let (broker, served) = (&broker, &served);
        answers += 1;
        async move {
            broker.produce_station(&change).await;
            let health = served.health().await;
            assert_eq!(health["status"], "ok");
            let lag = health["viewer_lag_max"].as_u64().unwrap();
            assert!(lag <= BACKLOG as u64, "{health}");
            let dropped = health["viewers_dropped"].as_u64().unwrap();
            assert!(dropped <= SILENT as u64, "only silent pages: {health}");
            (dropped == SILENT as u64).then_some(())
        }
    })
    .await;
    assert!(answers > 1, "/health answered while the pages fell behind");
    for stream in &mut silent {
        assert!(
            closed_by_server(stream).await,
            "the server closed it once hung up"
        );
    }
    velib_testkit::wait_for("the silent pages' streams to end", TIMEOUT, || async {
        (served.health().await["viewers"] == READERS).then_some(())
    })
    .await;

    // Every reading page gets the last change, on the stream it opened first.
    broker.produce_station(&last).await;
    for reader in readers {
        tokio::time::timeout(TIMEOUT, reader)
            .await
            .expect("every reading page sees the last change")
            .expect("no reading page was hung up");
    }
    assert_eq!(served.health().await["viewers_dropped"], SILENT);

    // A page hung up reconnects (EventSource does, after the `retry` the snapshot set) and
    // starts from a fresh snapshot, which has the last change.
    let mut again = Events::open(&served.url("/api/events")).await;
    let (event, snapshot) = again.next().await;
    assert_eq!(event, "snapshot");
    assert_eq!(snapshot["stations"].as_array().unwrap().len(), STATIONS);
    assert!(has_station(&snapshot, &last_key, last.available_bikes));

    served.stop().await;
}

/// A page that reads nothing does not hold the shutdown up, however large the backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_reads_nothing_does_not_hold_up_the_shutdown() {
    // A thousand heartbeats: far more than the test lasts.
    let (_broker, _, served) = city_served(1000).await;
    let mut silent = silent_viewer(served.addr).await;
    velib_testkit::wait_for("the page to be connected", TIMEOUT, || async {
        (served.health().await["viewers"] == 1).then_some(())
    })
    .await;
    let report = served.stop().await;
    assert_eq!(report.stations, STATIONS);
    assert!(closed_by_server(&mut silent).await);
}
