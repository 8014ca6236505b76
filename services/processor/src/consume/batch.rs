//! A batch in the making: records decoded and validated the moment they are received, the
//! bytes of the valid ones kept for the rare batch PostgreSQL refuses, and the offsets the
//! batch covers in each partition.
//!
//! NB: no `detach()` of every message (three allocations each: payload, key, topic). A
//! valid record's key and value are appended to one buffer the batch reuses, and only a
//! rejected record is copied out on its own, for the DLQ.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Instant;

use flight_model::validate::decode_and_validate;
use flight_model::{FlightRecord, Rejection};
use rdkafka::message::{BorrowedMessage, Message};

use crate::dlq::Rejected;
use crate::sink::Rows;

/// The records a batch holds from one partition, all received under one assignment of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The assignment the records were received under (see [`super::ledger::Ledger`]).
    pub epoch: u64,
    /// The first offset.
    pub first: i64,
    /// The last offset.
    pub last: i64,
}

/// Where a valid record came from and where its bytes sit in [`Batch::raw`].
#[derive(Debug, Clone)]
struct Source {
    partition: i32,
    offset: i64,
    key: Option<Range<usize>>,
    payload: Range<usize>,
}

/// Records received, decoded and validated, waiting to be written.
#[derive(Debug)]
pub struct Batch {
    /// The valid records, in the order received.
    pub rows: Rows,
    /// Records to dead-letter: invalid ones at once, those PostgreSQL refuses later.
    pub rejected: Vec<Rejected>,
    /// Per partition: the offsets the batch covers.
    pub spans: BTreeMap<i32, Span>,
    /// The topic every record came from.
    topic: String,
    /// Per row of `rows`: its source.
    sources: Vec<Source>,
    /// Keys and values of the valid records, back to back.
    raw: Vec<u8>,
    /// Records received (valid or not).
    records: usize,
    /// When the first record arrived.
    started: Option<Instant>,
    /// The Unix time the records were validated against.
    now: i64,
}

impl Batch {
    /// An empty batch for `topic`, with room for `capacity` records.
    pub fn new(topic: &str, capacity: usize) -> Self {
        Self {
            rows: Rows::with_capacity(capacity),
            rejected: Vec::new(),
            spans: BTreeMap::new(),
            topic: topic.to_owned(),
            sources: Vec::with_capacity(capacity),
            // Real records are about 350 bytes.
            raw: Vec::with_capacity(capacity * 384),
            records: 0,
            started: None,
            now: 0,
        }
    }

    /// Empties the batch, keeping its buffers for the next one.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.rejected.clear();
        self.spans.clear();
        self.sources.clear();
        self.raw.clear();
        self.records = 0;
        self.started = None;
    }

    /// Records received so far.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether nothing was received yet.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// When the first record arrived.
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    /// Decodes and validates `message` against `now` (Unix seconds), received under
    /// assignment `epoch` of its partition.
    pub fn add(&mut self, message: &BorrowedMessage<'_>, epoch: u64, now: i64) {
        let (partition, offset) = (message.partition(), message.offset());
        // The fault suite counts redeliveries from these (trace level only).
        tracing::trace!(partition, offset, "record received");
        if self.records == 0 {
            self.started = Some(Instant::now());
            self.now = now;
        }
        self.records += 1;
        match self.spans.get_mut(&partition) {
            Some(span) if span.epoch == epoch => {
                span.first = span.first.min(offset);
                span.last = span.last.max(offset);
            }
            // First record of the partition, or the partition was assigned again since
            // (then it is fetched again from its committed offset): only the records of
            // the latest assignment count for the commit.
            _ => {
                self.spans.insert(
                    partition,
                    Span {
                        epoch,
                        first: offset,
                        last: offset,
                    },
                );
            }
        }
        let Some(payload) = message.payload() else {
            let rejection = Rejection::Malformed("the record has no value".into());
            self.rejected.push(rejected(
                &self.topic,
                partition,
                offset,
                message.key(),
                None,
                &rejection,
            ));
            return;
        };
        match decode_and_validate(payload, self.now) {
            Ok(record) => {
                let key = message.key().map(|key| self.keep(key));
                let payload = self.keep(payload);
                self.rows.push(record);
                self.sources.push(Source {
                    partition,
                    offset,
                    key,
                    payload,
                });
            }
            Err(rejection) => self.rejected.push(rejected(
                &self.topic,
                partition,
                offset,
                message.key(),
                Some(payload),
                &rejection,
            )),
        }
    }

    fn keep(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.raw.len();
        self.raw.extend_from_slice(bytes);
        start..self.raw.len()
    }

    /// The valid records at `rows` (indices into [`Batch::rows`]), decoded again from
    /// their bytes: only needed once PostgreSQL refused a batch.
    pub fn rows_at(&self, rows: &[usize]) -> Rows {
        let mut out = Rows::with_capacity(rows.len());
        for &row in rows {
            if let Ok(record) = self.decode(row) {
                out.push(record);
            }
        }
        out
    }

    fn decode(&self, row: usize) -> Result<FlightRecord, Rejection> {
        decode_and_validate(&self.raw[self.sources[row].payload.clone()], self.now)
    }

    /// Dead-letters valid row `row` with `rejection` (PostgreSQL refused it).
    pub fn reject_row(&mut self, row: usize, rejection: &Rejection) {
        let source = &self.sources[row];
        let key = source.key.clone().map(|k| &self.raw[k]);
        let r = rejected(
            &self.topic,
            source.partition,
            source.offset,
            key,
            Some(&self.raw[source.payload.clone()]),
            rejection,
        );
        self.rejected.push(r);
    }

    /// `partition:first-last` per partition, e.g. `0:100-199 2:40-87`, for the batch logs.
    pub fn offset_ranges(&self) -> String {
        self.spans
            .iter()
            .map(|(p, s)| format!("{p}:{}-{}", s.first, s.last))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn rejected(
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    rejection: &Rejection,
) -> Rejected {
    tracing::warn!(
        reason = rejection.reason(),
        detail = %rejection,
        partition,
        offset,
        "record rejected"
    );
    Rejected {
        key: key.map(<[u8]>::to_vec),
        payload: payload.map(<[u8]>::to_vec),
        reason: rejection.reason(),
        detail: rejection.to_string(),
        topic: topic.to_owned(),
        partition,
        offset,
    }
}
