//! Counting and logging of skipped records, shared by every source.

use std::fmt::Display;

/// The skipped records of one poll.
///
/// Each skip is logged at debug level with its position in the response, and the poll ends
/// with one warning summarising them (count and the first reason), so a feed with a thousand
/// bad records gives one warning per poll rather than a thousand.
#[derive(Debug)]
pub(crate) struct PollSkips<'a> {
    source: &'a str,
    count: u64,
    first: Option<String>,
}

impl<'a> PollSkips<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        PollSkips {
            source,
            count: 0,
            first: None,
        }
    }

    /// Records that the record at `index` (its position in the response, from 0) was skipped.
    pub(crate) fn skip(&mut self, index: usize, reason: &dyn Display) {
        tracing::debug!(source = self.source, index, %reason, "skipped a station record");
        if self.first.is_none() {
            self.first = Some(format!("record {index}: {reason}"));
        }
        self.count += 1;
    }

    /// Logs the summary and returns how many were skipped.
    pub(crate) fn finish(self, kept: usize) -> u64 {
        if let Some(first) = &self.first {
            tracing::warn!(
                source = self.source,
                skipped = self.count,
                kept,
                first = %first,
                "skipped unreadable station records in this poll"
            );
        }
        self.count
    }
}
