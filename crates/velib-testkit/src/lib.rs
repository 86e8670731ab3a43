//! Real Kafka-protocol brokers for velib's tests and demo, and helpers to use them.
//!
//! Two brokers are available, both spoken to over TCP on 127.0.0.1:
//!
//! - [`MockKafka`]: librdkafka's mock cluster, in-process. Fast, supports produce, fetch,
//!   consumer groups and idempotence; no Admin API (topics are created through
//!   [`MockKafka::create_topic`]) and no retention. Its consumer-group join delay is set to 0 so
//!   a group forms at once instead of after 3 s.
//! - Apache Kafka ([`kafka::KafkaCluster`]), KRaft nodes as separate JVM processes. `cargo xtask
//!   test` starts one node and hands its address to the tests in [`KAFKA_ENV`] (read through
//!   [`kafka_bootstrap`]); tests that need a cluster of their own (three nodes, a node to kill)
//!   start it from the jars named in [`kafka::LIBS_ENV`]. Tests that need Apache Kafka are
//!   `#[ignore]`d, so plain `cargo test` runs without Java.
//!
//! Every test takes fresh topic and group names from [`unique_name`], so tests sharing a broker
//! never see each other's records.

pub mod child;
pub mod group;
pub mod kafka;
pub mod real_day;
pub mod secure;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka_sys as rdsys;
use std::ffi::{CStr, CString};
use std::future::Future;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use velib_model::topics;

/// The environment variable through which `cargo xtask test` hands the bootstrap address of its
/// Apache Kafka node to the `#[ignore]`d tests.
pub const KAFKA_ENV: &str = "VELIB_KAFKA_BOOTSTRAP";

/// A librdkafka mock cluster running inside this process, listening on 127.0.0.1.
///
/// Clients reach it through [`bootstrap_servers`](MockKafka::bootstrap_servers) like any
/// broker. It is destroyed when dropped.
pub struct MockKafka {
    cluster: NonNull<rdsys::rd_kafka_mock_cluster_t>,
    bootstrap: String,
    brokers: i32,
    // The client handle whose background thread runs the cluster; it must outlive `cluster`,
    // which `Drop` guarantees by destroying the cluster first.
    _handle: BaseProducer,
}

// SAFETY: every mock-cluster call used here is a request queued to the cluster's own thread
// (librdkafka's mock API is designed to be called from any thread); the pointer itself is
// never mutated after construction.
unsafe impl Send for MockKafka {}
// SAFETY: as above; all methods take `&self` and only enqueue operations.
unsafe impl Sync for MockKafka {}

impl std::fmt::Debug for MockKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockKafka")
            .field("bootstrap", &self.bootstrap)
            .field("brokers", &self.brokers)
            .finish()
    }
}

impl MockKafka {
    /// Starts a cluster of `brokers` brokers (ids `1..=brokers`) with an immediate consumer-group
    /// join.
    ///
    /// # Errors
    ///
    /// When librdkafka cannot create the cluster (for example, no free port).
    pub fn start(brokers: i32) -> Result<MockKafka, KafkaError> {
        let handle: BaseProducer = ClientConfig::new()
            // The handle exists only to host the cluster; keep it quiet.
            .set("log_level", "3")
            .create()?;
        // SAFETY: `handle` is a valid client for the duration of the call and is kept alive
        // in the returned struct for as long as the cluster exists.
        let raw =
            unsafe { rdsys::rd_kafka_mock_cluster_new(handle.client().native_ptr(), brokers) };
        let cluster = NonNull::new(raw).ok_or(KafkaError::MockCluster(RDKafkaErrorCode::Fail))?;
        // SAFETY: `cluster` is the live cluster created above.
        let bootstrap = unsafe {
            rdsys::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster.as_ptr(), 0);
            CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(cluster.as_ptr()))
                .to_string_lossy()
                .into_owned()
        };
        Ok(MockKafka {
            cluster,
            bootstrap,
            brokers,
            _handle: handle,
        })
    }

    /// The `bootstrap.servers` value for clients of this cluster.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The number of brokers.
    pub fn brokers(&self) -> i32 {
        self.brokers
    }

    /// Creates `topic` with `partitions` partitions (replication factor 1).
    ///
    /// # Errors
    ///
    /// The broker's error, for example when the topic exists.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        let name = CString::new(topic)
            .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::InvalidArgument))?;
        // SAFETY: the cluster is alive while `self` is; `name` outlives the call.
        let err = unsafe {
            rdsys::rd_kafka_mock_topic_create(self.cluster.as_ptr(), name.as_ptr(), partitions, 1)
        };
        check(err)
    }

    /// Takes broker `id` down: its connections are closed and new ones refused.
    ///
    /// # Errors
    ///
    /// When there is no such broker.
    pub fn broker_down(&self, id: i32) -> Result<(), KafkaError> {
        // SAFETY: the cluster is alive while `self` is.
        check(unsafe { rdsys::rd_kafka_mock_broker_set_down(self.cluster.as_ptr(), id) })
    }

    /// Brings broker `id` back up.
    ///
    /// # Errors
    ///
    /// When there is no such broker.
    pub fn broker_up(&self, id: i32) -> Result<(), KafkaError> {
        // SAFETY: the cluster is alive while `self` is.
        check(unsafe { rdsys::rd_kafka_mock_broker_set_up(self.cluster.as_ptr(), id) })
    }

    /// Takes every broker down.
    ///
    /// # Errors
    ///
    /// As [`broker_down`](MockKafka::broker_down).
    pub fn all_brokers_down(&self) -> Result<(), KafkaError> {
        (1..=self.brokers).try_for_each(|id| self.broker_down(id))
    }

    /// Brings every broker back up.
    ///
    /// # Errors
    ///
    /// As [`broker_up`](MockKafka::broker_up).
    pub fn all_brokers_up(&self) -> Result<(), KafkaError> {
        (1..=self.brokers).try_for_each(|id| self.broker_up(id))
    }

    /// Makes the cluster answer the next `errors.len()` requests of API `api_key` (Kafka's
    /// ApiKey: 8 is OffsetCommit, 12 Heartbeat, …), whichever client sends them, with these
    /// errors in order (`rd_kafka_mock_push_request_errors_array`).
    pub fn push_request_errors(&self, api_key: i16, errors: &[rdsys::rd_kafka_resp_err_t]) {
        // SAFETY: the cluster is alive while `self` is; librdkafka copies the array.
        unsafe {
            rdsys::rd_kafka_mock_push_request_errors_array(
                self.cluster.as_ptr(),
                api_key,
                errors.len(),
                errors.as_ptr(),
            );
        }
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        // SAFETY: created in `start`, destroyed exactly once, before `_handle` is dropped.
        unsafe { rdsys::rd_kafka_mock_cluster_destroy(self.cluster.as_ptr()) }
    }
}

fn check(err: rdsys::rd_kafka_resp_err_t) -> Result<(), KafkaError> {
    let code: RDKafkaErrorCode = err.into();
    if code == RDKafkaErrorCode::NoError {
        Ok(())
    } else {
        Err(KafkaError::MockCluster(code))
    }
}

/// Sends the test's logs to its captured output (shown when it fails), filtered by `RUST_LOG`,
/// else by `default_filter` (`""` for none). Safe to call from every test.
pub fn test_logs(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_test_writer()
        .try_init();
}

/// The bootstrap address of the Apache Kafka node started by `cargo xtask test`.
///
/// # Panics
///
/// When [`KAFKA_ENV`] is not set, with a message saying how to run these tests.
pub fn kafka_bootstrap() -> String {
    std::env::var(KAFKA_ENV).unwrap_or_else(|_| {
        panic!(
            "{KAFKA_ENV} is not set: this test needs Apache Kafka. Run `cargo xtask test`, or \
             start a node with `cargo xtask kafka` and export {KAFKA_ENV}=<its address>"
        )
    })
}

/// Creates `topic` through the Admin API (CreateTopics), replication factor 1.
///
/// # Errors
///
/// The broker's error for the topic, or a client error.
pub async fn admin_create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for result in results {
        if let Err((_topic, code)) = result {
            return Err(KafkaError::AdminOp(code));
        }
    }
    Ok(())
}

/// The four topics of a velib pipeline (stations, empty-station events, dead letters, the
/// monitor's state) under names no other test uses, created through the Admin API with the
/// partitions `velib-topics create` gives them by default: 10, 3, 1 and 10.
///
/// Destructure it to name the topics as the test likes:
/// `let PipelineTopics { stations, events, dlq, state } = PipelineTopics::create(&bootstrap).await;`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineTopics {
    /// Station records (10 partitions).
    pub stations: String,
    /// Empty-station events (3 partitions).
    pub events: String,
    /// Dead letters (1 partition).
    pub dlq: String,
    /// The exactly-once monitor's state changelog (10 partitions, as many as `stations`).
    pub state: String,
}

impl PipelineTopics {
    /// Creates the four topics on `bootstrap` (replication factor 1).
    ///
    /// # Panics
    ///
    /// When a topic cannot be created, naming it and the broker's answer.
    pub async fn create(bootstrap: &str) -> PipelineTopics {
        let created = PipelineTopics {
            stations: unique_name(topics::STATIONS),
            events: unique_name(topics::EMPTY_STATIONS),
            dlq: unique_name(topics::DEAD_LETTERS),
            state: unique_name(topics::MONITOR_STATE),
        };
        for (topic, partitions) in [
            (&created.stations, 10),
            (&created.events, 3),
            (&created.dlq, 1),
            (&created.state, 10),
        ] {
            if let Err(e) = admin_create_topic(bootstrap, topic, partitions).await {
                panic!("cannot create the test topic {topic} on {bootstrap}: {e}");
            }
        }
        created
    }
}

/// A `127.0.0.1:PORT` address where nothing listens, for tests of a broker or a server that is
/// not there: a port the system handed out, closed again at once. Connections to it are
/// refused (unless another process happens to take the port in between, which is rare).
///
/// # Panics
///
/// When no port can be bound on 127.0.0.1.
pub fn unreachable_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port on 127.0.0.1");
    let address = listener.local_addr().expect("the bound address");
    drop(listener);
    address.to_string()
}

/// A name no other test has used: `prefix-<pid>-<time>-<counter>`, valid as a topic or group.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` until it returns `Some`, or panics with `what` once `timeout` has passed.
///
/// This is how tests wait for an asynchronous outcome without sleeping a guessed time.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`wait_for`] for tests without an async runtime: polls `check` every `every` until it
/// returns `Some`, blocking the thread, or panics with `what` once `timeout` has passed.
///
/// A check may itself panic to end the wait early, for example when the process it waits on
/// has exited.
pub fn wait_for_blocking<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

/// Whether consumer group `group` has committed, on every partition of `topic`, the offset of
/// the partition's end: it has processed everything written so far. `false` while anything is
/// unknown (the group has committed nothing yet, a broker does not answer).
pub fn group_caught_up(bootstrap: &str, group: &str, topic: &str) -> bool {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    let Ok(consumer) = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("log_level", "3")
        .create::<BaseConsumer>()
    else {
        return false;
    };
    let timeout = Duration::from_secs(5);
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), timeout) else {
        return false;
    };
    let Some(partitions) = metadata.topics().first().map(|t| t.partitions().len()) else {
        return false;
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p as i32);
    }
    let Ok(committed) = consumer.committed_offsets(tpl, timeout) else {
        return false;
    };
    committed.elements().iter().all(|e| {
        let Ok((_, high)) = consumer.fetch_watermarks(topic, e.partition(), timeout) else {
            return false;
        };
        match e.offset() {
            Offset::Offset(o) => o >= high,
            // Nothing committed on an empty partition is caught up too.
            _ => high == 0,
        }
    })
}

/// Whether the cluster at `bootstrap` has no topic `topic` (asked without creating it).
///
/// # Panics
///
/// When the cluster does not answer.
pub fn kafka_topic_absent(bootstrap: &str, topic: &str) -> bool {
    partition_count(bootstrap, topic) == 0
}

/// How many partitions `topic` has at `bootstrap` (0 when there is no such topic), asked
/// without creating it.
///
/// # Panics
///
/// When the cluster does not answer.
fn partition_count(bootstrap: &str, topic: &str) -> usize {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("create a metadata client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("the cluster's metadata");
    metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len())
}

/// A consumer in a fresh group reading `topic` from the beginning.
///
/// # Errors
///
/// A client error.
pub fn reader(bootstrap: &str, topic: &str) -> Result<StreamConsumer, KafkaError> {
    reader_with(bootstrap, topic, &[])
}

/// [`reader`] with some settings changed.
fn reader_with(
    bootstrap: &str,
    topic: &str,
    settings: &[(&str, &str)],
) -> Result<StreamConsumer, KafkaError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name("velib-test-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Reads `topic` from the beginning until `count` records arrived, or panics after `timeout`
/// with how many did.
///
/// # Panics
///
/// On a consumer error that is not transient (see `transient`), or when fewer than `count`
/// records arrive in time.
pub async fn read_records(
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer = reader(bootstrap, topic).expect("create a reader");
    let mut out = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < count {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(e)) if transient(&e) => {}
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => panic!(
                "timed out after {timeout:?} reading {topic}: {} of {count} records",
                out.len()
            ),
        }
    }
    out
}

/// Reads whatever `topic` holds: every partition to its end as the broker reports it (the end
/// of its committed records), however long the reader takes to join and fetch on a busy
/// machine; then on until `quiet` passes without a new record. For checking that nothing *more*
/// than expected arrived.
///
/// # Panics
///
/// On a consumer error that is not transient (a broker gone, a leader moving), or when the
/// partitions' ends are not reached within a minute.
pub async fn read_until_quiet(bootstrap: &str, topic: &str, quiet: Duration) -> Vec<OwnedMessage> {
    let consumer = reader_with(bootstrap, topic, &[("enable.partition.eof", "true")])
        .expect("create a reader");
    let (b, t) = (bootstrap.to_owned(), topic.to_owned());
    let partitions = tokio::task::spawn_blocking(move || partition_count(&b, &t))
        .await
        .expect("the metadata request");
    let mut at_end = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + END_TIMEOUT;
    let mut out = Vec::new();
    loop {
        // Until every partition has reported its end, the wait is the reader's join and first
        // fetch, not quiet.
        let reading_to_end = at_end.len() < partitions;
        let wait = if reading_to_end {
            tokio::time::timeout_at(deadline, consumer.recv()).await
        } else {
            tokio::time::timeout(quiet, consumer.recv()).await
        };
        match wait {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Ok(Err(e)) if transient(&e) => {}
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) if reading_to_end => panic!(
                "reading {topic}: {} of its {partitions} partitions read to their end within \
                 {END_TIMEOUT:?} ({} records)",
                at_end.len(),
                out.len()
            ),
            Err(_) => return out,
        }
    }
}

/// How long [`read_until_quiet`] waits for every partition's end.
const END_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether a reader's error is one librdkafka reports and then recovers from by itself: a
/// broker of the cluster gone (killed by a test) or its partitions moving to another leader.
/// The readers go on through those; anything else is a test failure.
fn transient(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::NetworkException
        )
    )
}

/// The key of a record as UTF-8, for assertions.
pub fn key_str(m: &OwnedMessage) -> &str {
    m.key()
        .map(|k| std::str::from_utf8(k).expect("UTF-8 key"))
        .unwrap_or("")
}

/// Another binary of the workspace, found beside `own_binary` (a test's
/// `env!("CARGO_BIN_EXE_…")`): `cargo test --workspace`, as `cargo xtask test` runs it, builds
/// every package's binaries into the same directory.
///
/// # Panics
///
/// When it is not there, saying how to run the test.
pub fn sibling_binary(own_binary: &str, name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(own_binary).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: run this test with `cargo test --workspace` (or `cargo xtask test`)",
        path.display()
    );
    path
}

/// A `Write` that keeps what was written, shared between the code under test and the test.
#[derive(Debug, Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The complete lines written so far. A line still being written (its text written in
    /// several pieces, its newline not yet) is left out: a test reading while the code under
    /// test writes must not see half a JSON object.
    pub fn lines(&self) -> Vec<String> {
        let written = self.0.lock().unwrap();
        let complete = match written.iter().rposition(|&b| b == b'\n') {
            Some(end) => &written[..end],
            None => return Vec::new(),
        };
        String::from_utf8_lossy(complete)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A binary running as a child process, its stdout collected line by line.
#[derive(Debug)]
pub struct Process {
    child: tokio::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `command` with stdout piped (killed if dropped).
    ///
    /// # Panics
    ///
    /// When it cannot be started.
    pub fn spawn(command: &mut tokio::process::Command) -> Process {
        use tokio::io::AsyncBufReadExt;
        child::hangup_by_default(command);
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the binary");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reader = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let sink = std::sync::Arc::clone(&lines);
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Process { child, lines }
    }

    /// The lines printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Kills the process with SIGKILL, as a crash would, and waits for it.
    ///
    /// # Panics
    ///
    /// When it cannot be killed.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill the process");
    }

    /// Sends SIGTERM and waits (up to a minute) for the exit status.
    ///
    /// # Panics
    ///
    /// When the process does not stop in time.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("still running").to_string();
        tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("run kill");
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the process stops on SIGTERM")
            .expect("wait for the process")
    }
}

/// Kafka's `Utils.murmur2` (clients/src/main/java/org/apache/kafka/common/utils/Utils.java),
/// ported as written, so the tests have their own reference for the Java client's partitioner.
pub fn java_murmur2(key: &[u8]) -> i32 {
    const M: i32 = 0x5bd1_e995;
    let seed: i32 = 0x9747_b28c_u32 as i32;
    let len = key.len();
    let mut h: i32 = seed ^ (len as i32);
    for chunk in key.chunks_exact(4) {
        let mut k = i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= ((k as u32) >> 24) as i32;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = &key[len & !3..];
    if tail.len() >= 3 {
        h ^= i32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= i32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= i32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(M);
    h ^= ((h as u32) >> 15) as i32;
    h
}

/// The partition Kafka's Java client (and kafka-python) picks for `key` among `partitions`:
/// `toPositive(murmur2(key)) % partitions`.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    (java_murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::Captured;
    use std::io::Write;

    #[test]
    fn a_line_being_written_is_not_read_until_its_newline() {
        let captured = Captured::default();
        let mut writer = captured.clone();
        writer.write_all(b"{\"a\":1}\n{\"b\":").unwrap();
        assert_eq!(captured.lines(), ["{\"a\":1}"]);
        writer.write_all(b"2}\n").unwrap();
        assert_eq!(captured.lines(), ["{\"a\":1}", "{\"b\":2}"]);
    }
}
