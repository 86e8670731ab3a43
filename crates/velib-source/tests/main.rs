//! velib-source's integration tests, one binary (see STYLE.md: link once, not per file).
//! The HTTP sources talk to wiremock servers on 127.0.0.1 over real TCP.

mod simulate;
