//! `velib-topics`: topic administration for velib, shipped beside the other binaries so a
//! deployment (the compose init container, a Kubernetes job) creates its topics with the same
//! code as `cargo xtask create-topics`. The work is this crate's library, `velib_topics`.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Creates velib's topics (stations, empty-station events, dead letters), or brings \
             them to the partitions and configs asked; safe to run again"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the topics that are missing, add partitions and set configs on those that
    /// differ, then print every topic as it is; nothing is ever taken away.
    Create(Box<velib_topics::Args>),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Quiet unless something goes wrong: the table on stdout is the answer.
    velib_kafka::service::init_tracing_with("warn");
    match cli.command {
        Command::Create(args) => velib_topics::run(*args),
    }
}
