//! Apache Kafka itself, in KRaft mode, as child processes: one combined broker/controller node
//! or a cluster of several, started from the broker's published jars as Kafka's own `bin/`
//! scripts do (`kafka.tools.StorageTool format`, then `kafka.Kafka server.properties`).
//!
//! The jars are fetched once with Maven from the package registry into velib's cache
//! ([`ensure_installed`]); `cargo xtask test` and `cargo xtask kafka` do that and hand the jar
//! directory to tests in [`LIBS_ENV`]. Nothing but Java ≥ 17 and Maven is needed.
//!
//! Nodes are tuned for a small machine running tests beside them: 256 MiB heaps, few threads,
//! an immediate first consumer-group rebalance, retention and compaction checked every second.
//! A cluster's storage lives in a temporary directory removed when it is dropped; its logs
//! stay, and errors name them.

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use std::fmt::Write as _;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Apache Kafka version the tests run and `cargo xtask kafka` starts (the Docker compose
/// file uses the same `apache/kafka` image version).
pub const KAFKA_VERSION: &str = "4.1.0";

/// The environment variable naming the directory of the broker's jars, set by `cargo xtask
/// test` for the tests that start nodes of their own.
pub const LIBS_ENV: &str = "VELIB_KAFKA_LIBS";

/// The SCRAM-SHA-512 user created at format time when [`KafkaOptions::scram_password`] is set.
pub const TEST_SCRAM_USER: &str = "velib";

/// How long a node may take to start and be seen in the cluster's metadata (a JVM on a busy
/// two-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The maven-dependency-plugin version used to copy the jars (pinned: Maven's default for it
/// changes with Maven's own version).
const DEPENDENCY_PLUGIN: &str = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1";

/// velib's cache directory: `$VELIB_CACHE_DIR`, else `$XDG_CACHE_HOME/velib`, else
/// `~/.cache/velib`.
///
/// # Errors
///
/// When none of these variables is set.
pub fn cache_dir() -> Result<PathBuf, String> {
    match (
        std::env::var_os("VELIB_CACHE_DIR"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    ) {
        (Some(dir), _, _) => Ok(PathBuf::from(dir)),
        (None, Some(xdg), _) => Ok(PathBuf::from(xdg).join("velib")),
        (None, None, Some(home)) => Ok(PathBuf::from(home).join(".cache").join("velib")),
        (None, None, None) => {
            Err("set VELIB_CACHE_DIR (or HOME) to say where velib may cache files".into())
        }
    }
}

/// The directory of Apache Kafka [`KAFKA_VERSION`]'s jars (the broker and its runtime
/// dependencies), fetched with Maven into [`cache_dir`]`/kafka-<version>/libs` the first time.
/// `say` is told, before it starts, that a fetch is under way.
///
/// # Errors
///
/// When Maven is missing or fails; the message includes its output.
pub fn ensure_installed(say: impl FnOnce(&str)) -> Result<PathBuf, String> {
    let root = cache_dir()?.join(format!("kafka-{KAFKA_VERSION}"));
    let libs = root.join("libs");
    if libs.is_dir() {
        return Ok(libs);
    }
    say(&format!(
        "fetching Apache Kafka {KAFKA_VERSION} with Maven into {} (first time only)",
        root.display()
    ));
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let pom = root.join("pom.xml");
    std::fs::write(&pom, pom_xml()).map_err(|e| format!("cannot write {}: {e}", pom.display()))?;
    // Copied into a scratch directory first and renamed at the end, so an interrupted fetch is
    // not mistaken for a complete one next time.
    let partial = root.join("libs.partial");
    let _ = std::fs::remove_dir_all(&partial);
    let output = Command::new("mvn")
        .args(["-B", "-q", "-f"])
        .arg(&pom)
        .arg(format!("{DEPENDENCY_PLUGIN}:copy-dependencies"))
        .arg(format!("-DoutputDirectory={}", partial.display()))
        .arg("-DincludeScope=runtime")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "could not run Maven (`mvn`: {e}); Maven and Java >= 17 are needed to fetch and \
                 run Apache Kafka (on Debian: apt-get install maven openjdk-17-jdk-headless)"
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "Maven could not fetch org.apache.kafka:kafka_2.13:{KAFKA_VERSION} ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::rename(&partial, &libs)
        .map_err(|e| format!("cannot rename {} to libs: {e}", partial.display()))?;
    Ok(libs)
}

/// The jar directory `cargo xtask test` names in [`LIBS_ENV`].
///
/// # Panics
///
/// When it is not set, saying how to run the test.
pub fn libs_from_env() -> PathBuf {
    std::env::var_os(LIBS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{LIBS_ENV} is not set: this test starts Apache Kafka nodes of its own. Run \
             `cargo xtask test`, or set {LIBS_ENV} to the jar directory `cargo xtask kafka` prints"
            )
        })
}

/// A pom whose only purpose is to name the broker as a dependency, so Maven resolves it and its
/// runtime dependencies. The log4j SLF4J binding is what Kafka's own distribution ships, so the
/// nodes' logs are written.
fn pom_xml() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by velib to fetch Apache Kafka's broker with Maven; safe to delete. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>velib.cache</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
"#
    )
}

/// How to start a cluster.
#[derive(Debug, Clone, Default)]
pub struct KafkaOptions {
    /// The number of nodes, each a broker and a controller (1 when 0). With 3 or more, internal
    /// topics and new topics default to replication factor 3 and `min.insync.replicas=2`.
    pub nodes: usize,
    /// Adds a `SASL_PLAINTEXT` listener (SCRAM-SHA-512) and creates [`TEST_SCRAM_USER`] with
    /// this password at format time.
    pub scram_password: Option<String>,
    /// Adds an `SSL` listener serving this PEM file (PKCS#8 private key, then the certificate
    /// chain), as Kafka's `ssl.keystore.type=PEM` reads it.
    pub tls_keystore_pem: Option<PathBuf>,
    /// More broker properties, applied to every node after velib's.
    pub properties: Vec<(String, String)>,
    /// Where the cluster's directory (the nodes' logs and data) is made: the system's
    /// temporary directory when `None`. The benchmarks put it on a memory file system, where
    /// a shared machine's disk cannot stall the broker's appends.
    pub data_root: Option<PathBuf>,
}

/// The listener kinds a node may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `PLAINTEXT`: always there; brokers also talk to each other through it.
    Plaintext,
    /// `SASL_PLAINTEXT` with SCRAM-SHA-512 ([`KafkaOptions::scram_password`]).
    Sasl,
    /// `SSL` ([`KafkaOptions::tls_keystore_pem`]).
    Tls,
}

#[derive(Debug)]
struct Node {
    id: usize,
    plaintext: u16,
    controller: u16,
    sasl: Option<u16>,
    tls: Option<u16>,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running Apache Kafka cluster of KRaft nodes on 127.0.0.1; every node is killed when it is
/// dropped (use [`stop`](KafkaCluster::stop) for a clean shutdown).
#[derive(Debug)]
pub struct KafkaCluster {
    libs: PathBuf,
    dir: PathBuf,
    nodes: Vec<Node>,
}

impl KafkaCluster {
    /// Formats storage for `options.nodes` nodes in a temporary directory, starts them with the
    /// jars in `libs` (see [`ensure_installed`]), and waits until the cluster's metadata lists
    /// every node as a broker.
    ///
    /// # Errors
    ///
    /// When Java cannot be started, a node exits or the cluster is not ready in time; the
    /// message names the node's log.
    pub fn start(libs: &Path, options: &KafkaOptions) -> Result<KafkaCluster, String> {
        let count = options.nodes.max(1);
        let dir = options
            .data_root
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join(crate::unique_name("velib-kafka"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::fs::write(dir.join("log4j2.properties"), LOG4J2)
            .map_err(|e| format!("cannot write into {}: {e}", dir.display()))?;
        let ports = free_ports(count * 4)?;
        let mut nodes: Vec<Node> = (0..count)
            .map(|i| Node {
                id: i + 1,
                plaintext: ports[i * 4],
                controller: ports[i * 4 + 1],
                sasl: options.scram_password.as_ref().map(|_| ports[i * 4 + 2]),
                tls: options.tls_keystore_pem.as_ref().map(|_| ports[i * 4 + 3]),
                config: dir.join(format!("node-{}.properties", i + 1)),
                log: dir.join(format!("node-{}.log", i + 1)),
                child: None,
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller))
            .collect::<Vec<_>>()
            .join(",");
        for node in &nodes {
            let text = server_properties(node, &voters, count, &dir, options);
            std::fs::write(&node.config, text)
                .map_err(|e| format!("cannot write {}: {e}", node.config.display()))?;
        }
        let mut cluster = KafkaCluster {
            libs: libs.to_path_buf(),
            dir,
            nodes: Vec::new(),
        };
        cluster.format(&nodes, options)?;
        cluster.nodes = std::mem::take(&mut nodes);
        for i in 0..count {
            cluster.spawn(i)?;
        }
        cluster.wait_ready(count)?;
        Ok(cluster)
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The `bootstrap.servers` value for plaintext clients: every node's address.
    pub fn bootstrap(&self) -> String {
        self.bootstrap_for(Listener::Plaintext)
            .expect("the plaintext listener is always there")
    }

    /// The `bootstrap.servers` value for `listener`, if the cluster has it.
    pub fn bootstrap_for(&self, listener: Listener) -> Option<String> {
        self.nodes
            .iter()
            .map(|n| match listener {
                Listener::Plaintext => Some(n.plaintext),
                Listener::Sasl => n.sasl,
                Listener::Tls => n.tls,
            })
            .map(|port| port.map(|p| format!("127.0.0.1:{p}")))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(","))
    }

    /// The log file of node `i` (0-based).
    pub fn log_path(&self, i: usize) -> &Path {
        &self.nodes[i].log
    }

    /// The directory holding the nodes' configs, logs and storage.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops node `i` (0-based) cleanly: SIGTERM, then SIGKILL if it has not exited within
    /// `grace`. Returns whether it stopped by itself.
    pub fn stop_node(&mut self, i: usize, grace: Duration) -> bool {
        self.nodes[i]
            .child
            .take()
            .is_none_or(|c| terminate(c, grace))
    }

    /// Kills node `i` (0-based) at once with SIGKILL, as a crash would.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` (0-based) again on its storage and ports, after
    /// [`stop_node`](KafkaCluster::stop_node) or [`kill_node`](KafkaCluster::kill_node), and
    /// waits until the cluster's metadata lists every running node again.
    ///
    /// # Errors
    ///
    /// As [`start`](KafkaCluster::start).
    pub fn restart_node(&mut self, i: usize) -> Result<(), String> {
        if self.nodes[i].child.is_none() {
            self.spawn(i)?;
        }
        let running = self.nodes.iter().filter(|n| n.child.is_some()).count();
        self.wait_ready(running)
    }

    /// Node `i` (0-based) loses its data, as a broker whose disk was replaced: killed, its
    /// storage removed and formatted again, started on the same ports. On a one-node cluster
    /// every topic is gone, and topics created again get new topic ids under their old names.
    ///
    /// # Errors
    ///
    /// As [`start`](KafkaCluster::start).
    pub fn wipe_node(&mut self, i: usize, options: &KafkaOptions) -> Result<(), String> {
        self.kill_node(i);
        let data = self.dir.join(format!("node-{}-data", self.nodes[i].id));
        std::fs::remove_dir_all(&data)
            .map_err(|e| format!("cannot remove {}: {e}", data.display()))?;
        self.format(&self.nodes[i..=i], options)?;
        self.restart_node(i)
    }

    /// [`start`](KafkaCluster::start) on a blocking thread, for async tests.
    ///
    /// # Panics
    ///
    /// When the cluster does not start, with the reason.
    pub async fn start_async(libs: PathBuf, options: KafkaOptions) -> KafkaCluster {
        tokio::task::spawn_blocking(move || KafkaCluster::start(&libs, &options))
            .await
            .expect("the start's thread")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`wipe_node`](KafkaCluster::wipe_node) on a blocking thread, for async tests.
    ///
    /// # Panics
    ///
    /// When the node does not come back, with the reason.
    pub async fn wipe_node_async(mut self, i: usize, options: KafkaOptions) -> KafkaCluster {
        tokio::task::spawn_blocking(move || self.wipe_node(i, &options).map(|()| self))
            .await
            .expect("the wipe's thread")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Stops every node: SIGTERM to all, SIGKILL to those still running after `grace`.
    /// Returns whether all stopped by themselves.
    pub fn stop(mut self, grace: Duration) -> bool {
        let children: Vec<Child> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.child.take())
            .collect();
        for child in &children {
            signal_term(child);
        }
        let deadline = Instant::now() + grace;
        let mut clean = true;
        for child in children {
            clean &= terminate(child, deadline.saturating_duration_since(Instant::now()));
        }
        clean
    }

    fn java(&self) -> Command {
        let mut cmd = Command::new("java");
        cmd.args([
            // The whole heap from the start: grown from a smaller one, the heap grew through
            // full collections of 50-140 ms each, a broker's pause a latency would measure.
            "-Xms256m",
            "-Xmx256m",
            // One GC thread is plenty for a test broker and leaves the cores to the tests.
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
        ])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            self.dir.join("log4j2.properties").display()
        ))
        // Every collection and its pause, one file per JVM: a latency spike measured through
        // this broker can be told from a pause of the broker itself.
        .arg(format!(
            "-Xlog:gc:file={}",
            self.dir.join("gc-%p.log").display()
        ))
        .arg("-cp")
        .arg(format!("{}/*", self.libs.display()))
        .stdin(Stdio::null());
        cmd
    }

    /// Formats every node's storage (in parallel: each is a JVM start).
    fn format(&self, nodes: &[Node], options: &KafkaOptions) -> Result<(), String> {
        let cluster_id = cluster_id();
        let mut running = Vec::new();
        for node in nodes {
            let mut cmd = self.java();
            cmd.args(["kafka.tools.StorageTool", "format", "--ignore-formatted"])
                // One argument: an id starting with `-` (one in 64) would otherwise be taken
                // for a flag by the tool's argument parser.
                .arg(format!("--cluster-id={cluster_id}"))
                .arg("--config")
                .arg(&node.config);
            if let Some(password) = &options.scram_password {
                cmd.args([
                    "--add-scram",
                    &format!("SCRAM-SHA-512=[name={TEST_SCRAM_USER},password={password}]"),
                ]);
            }
            let child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| java_missing(&e))?;
            running.push((node.id, child));
        }
        for (id, child) in running {
            let output = child
                .wait_with_output()
                .map_err(|e| format!("formatting node {id}: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "formatting node {id}'s storage failed ({}): {}",
                    output.status,
                    tail(&String::from_utf8_lossy(&output.stdout), 20)
                        + &String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let node = &self.nodes[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| format!("cannot open {}: {e}", node.log.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", node.log.display()))?;
        let child = self
            .java()
            .arg("kafka.Kafka")
            .arg(&node.config)
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| java_missing(&e))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Waits until the cluster's metadata lists `brokers` brokers, checking that no node exited.
    fn wait_ready(&mut self, brokers: usize) -> Result<(), String> {
        let bootstrap = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("127.0.0.1:{}", n.plaintext))
            .collect::<Vec<_>>()
            .join(",");
        let client: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            // Refused connections while the JVMs start are expected; keep them out of the logs.
            .set("log_level", "0")
            .create()
            .map_err(|e| format!("cannot create a Kafka client: {e}"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = 0;
        loop {
            for node in &mut self.nodes {
                let exited = node
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    node.child = None;
                    return Err(format!(
                        "Apache Kafka node {} exited at start ({status}); its log is {}:\n{}",
                        node.id,
                        node.log.display(),
                        tail(&std::fs::read_to_string(&node.log).unwrap_or_default(), 15)
                    ));
                }
            }
            // The metadata request itself waits for an answer: no sleep is needed between tries.
            if let Ok(metadata) = client
                .client()
                .fetch_metadata(None, Duration::from_millis(1000))
            {
                seen = metadata.brokers().len();
                if seen >= brokers {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Apache Kafka at {bootstrap} listed {seen} of {brokers} brokers after \
                     {READY_TIMEOUT:?}; its logs are in {}",
                    self.dir.display()
                ));
            }
            // A refused connection returns at once; do not spin on it.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The storage goes; the logs and configs stay for whoever needs to read them.
        for node in &self.nodes {
            let _ = std::fs::remove_dir_all(self.dir.join(format!("node-{}-data", node.id)));
        }
    }
}

const LOG4J2: &str = "\
# Warnings and errors, and the line saying a node has started.
rootLogger.level=WARN
rootLogger.appenderRef.out.ref=OUT
appender.out.type=Console
appender.out.name=OUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
logger.started.name=kafka.server.KafkaRaftServer
logger.started.level=INFO
";

fn server_properties(
    node: &Node,
    voters: &str,
    count: usize,
    dir: &Path,
    options: &KafkaOptions,
) -> String {
    let replicas = count.min(3);
    let min_isr = if count >= 3 { 2 } else { 1 };
    let mut listeners = vec![
        format!("PLAINTEXT://127.0.0.1:{}", node.plaintext),
        format!("CONTROLLER://127.0.0.1:{}", node.controller),
    ];
    let mut advertised = vec![format!("PLAINTEXT://127.0.0.1:{}", node.plaintext)];
    let mut protocols = vec!["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"];
    if let Some(port) = node.sasl {
        listeners.push(format!("SASL_PLAINTEXT://127.0.0.1:{port}"));
        advertised.push(format!("SASL_PLAINTEXT://127.0.0.1:{port}"));
        protocols.push("SASL_PLAINTEXT:SASL_PLAINTEXT");
    }
    if let Some(port) = node.tls {
        listeners.push(format!("SSL://127.0.0.1:{port}"));
        advertised.push(format!("SSL://127.0.0.1:{port}"));
        protocols.push("SSL:SSL");
    }
    let mut p = String::new();
    let mut set = |key: &str, value: &str| {
        let _ = writeln!(p, "{key}={value}");
    };
    set("process.roles", "broker,controller");
    set("node.id", &node.id.to_string());
    // Static voters: every node knows the quorum from its config, so formatting needs only the
    // cluster id, for one node as for three.
    set("controller.quorum.voters", voters);
    set("controller.listener.names", "CONTROLLER");
    set("listeners", &listeners.join(","));
    set("advertised.listeners", &advertised.join(","));
    set("listener.security.protocol.map", &protocols.join(","));
    set("inter.broker.listener.name", "PLAINTEXT");
    let data = dir.join(format!("node-{}-data", node.id));
    set("log.dirs", &data.display().to_string());
    set("num.partitions", "1");
    set("default.replication.factor", &replicas.to_string());
    set("min.insync.replicas", &min_isr.to_string());
    set("offsets.topic.replication.factor", &replicas.to_string());
    set(
        "transaction.state.log.replication.factor",
        &replicas.to_string(),
    );
    set("transaction.state.log.min.isr", &min_isr.to_string());
    set(
        "share.coordinator.state.topic.replication.factor",
        &replicas.to_string(),
    );
    set(
        "share.coordinator.state.topic.min.isr",
        &min_isr.to_string(),
    );
    // Fewer internal partitions than the default 50: each costs files and start time.
    set("offsets.topic.num.partitions", "10");
    set("transaction.state.log.num.partitions", "10");
    // A consumer group forms at once instead of after 3 s.
    set("group.initial.rebalance.delay.ms", "0");
    // Retention and compaction act within seconds, as the tutorial's `retention.ms=4000` and
    // `segment.ms=2000` expect (the defaults check every 5 minutes, after 30 s).
    set("log.retention.check.interval.ms", "1000");
    set("log.initial.task.delay.ms", "1000");
    set("log.cleaner.backoff.ms", "1000");
    set("log.segment.delete.delay.ms", "1000");
    // Small buffers and few threads: three nodes share two cores with the tests.
    set("log.cleaner.dedupe.buffer.size", "8388608");
    set("log.cleaner.threads", "1");
    set("num.network.threads", "2");
    set("num.io.threads", "2");
    set("num.recovery.threads.per.data.dir", "1");
    set("background.threads", "2");
    if node.sasl.is_some() {
        set("sasl.enabled.mechanisms", "SCRAM-SHA-512");
        // The broker checks SCRAM credentials against those in its metadata; it only needs the
        // login module named.
        set(
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config",
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        );
    }
    if let Some(pem) = &options.tls_keystore_pem {
        set("ssl.keystore.type", "PEM");
        set("ssl.keystore.location", &pem.display().to_string());
    }
    for (key, value) in &options.properties {
        set(key, value);
    }
    p
}

/// A random cluster id as Kafka writes them: 16 bytes, URL-safe base64 without padding.
fn cluster_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

/// `count` distinct ports on 127.0.0.1 that were free a moment ago (all listeners are held
/// open together, so no two are the same, then closed before the nodes bind them).
fn free_ports(count: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot find a free port: {e}"))
}

fn signal_term(child: &Child) {
    // SIGTERM lets the broker shut down cleanly; std's `kill` would send SIGKILL.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// SIGTERM (again, harmlessly, if already sent), then SIGKILL after `grace`; whether it
/// stopped by itself.
fn terminate(mut child: Child, grace: Duration) -> bool {
    signal_term(&child);
    let deadline = Instant::now() + grace;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        // Polling a child's exit: std offers no wait with a timeout.
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn java_missing(e: &std::io::Error) -> String {
    format!("could not run `java` ({e}): Apache Kafka needs Java >= 17 on the PATH")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n") + "\n"
}
