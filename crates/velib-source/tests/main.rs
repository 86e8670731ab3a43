//! velib-source's integration tests, one binary (see STYLE.md: link once, not per file).
//! The HTTP sources talk to wiremock servers (or a raw TCP server, for responses wiremock will
//! not produce) on 127.0.0.1 over real TCP.

mod continuity;
mod faults;
mod gbfs;
mod jcdecaux;
mod replay;
mod simulate;
mod spec;
mod support;
