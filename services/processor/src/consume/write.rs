//! The writer: one batch at a time, its rows into PostgreSQL and its rejected records into
//! the DLQ; once both are durable its offsets go to the [`Ledger`] for the commit.
//!
//! What a failure means is [`retry`]'s decision: a transient one (connection, timeout,
//! shutdown, full disk) is retried with backoff while nothing is committed and `/readyz`
//! says so; a permanent one (PostgreSQL refusing a value) splits the batch until the
//! records at fault are isolated, and those go to the DLQ while the rest lands.

use std::sync::Arc;
use std::sync::mpsc::Sender;

use flight_model::Rejection;
use retry::{Backoff, Class};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};

use super::batch::Batch;
use super::ledger::Ledger;
use crate::dlq::{Dlq, Rejected};
use crate::health::Health;
use crate::metrics::{FailureLabel, Metrics, ReasonLabel};
use crate::sink::Rows;
use crate::{Error, Result};

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Records in the batch.
    pub records: u64,
    /// Rows newly inserted.
    pub inserted: u64,
    /// Valid records whose row already existed.
    pub duplicates: u64,
    /// Records sent to the DLQ.
    pub rejected: u64,
}

/// What one attempt to write some rows came to, once transient failures are behind it.
enum Written {
    /// Rows newly inserted.
    Rows(u64),
    /// PostgreSQL refused the data (a permanent error).
    Refused(sqlx::Error),
}

/// Writes batches; see the module docs.
pub struct Writer {
    /// DLQ producer.
    pub dlq: Dlq,
    /// Database pool.
    pub pool: PgPool,
    /// Where durable offsets go.
    pub ledger: Arc<Ledger>,
    /// Metrics to update per batch.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` reports.
    pub health: Arc<Health>,
}

impl Writer {
    /// Tells the receive thread it is free (handing back the batch it finished), writes
    /// the batch it gets, and so on until the receive thread stops sending.
    pub async fn run(
        &self,
        mut batches: mpsc::Receiver<Batch>,
        idle: Sender<Option<Batch>>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        let mut finished = None;
        loop {
            if idle.send(finished.take()).is_err() {
                return Ok(());
            }
            let Some(mut batch) = batches.recv().await else {
                return Ok(());
            };
            self.flush(&mut batch, &mut stop).await?;
            batch.clear();
            finished = Some(batch);
        }
    }

    /// Writes one batch and its DLQ records, then hands its offsets to the ledger.
    pub async fn flush(
        &self,
        batch: &mut Batch,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<BatchOutcome> {
        let ranges = batch.offset_ranges();
        tracing::debug!(records = batch.len(), offsets = %ranges, "batch received");
        let written = batch.rows.len() as u64;
        let inserted = self.write(batch, stop).await?;
        self.dlq.send_all(&batch.rejected, stop).await?;
        self.ledger.durable(&batch.spans);
        let refused = batch
            .rejected
            .iter()
            .filter(|r| r.reason == "rejected_by_database")
            .count() as u64;
        let outcome = BatchOutcome {
            records: batch.len() as u64,
            inserted,
            duplicates: (written - inserted).saturating_sub(refused),
            rejected: batch.rejected.len() as u64,
        };
        self.record(&outcome, &batch.rejected, batch, &ranges);
        Ok(outcome)
    }

    /// Writes the valid records of a batch. A permanent error splits the rows in halves
    /// until the records PostgreSQL refuses are isolated: those join the batch's rejected
    /// records (reason `rejected_by_database`) and every other row lands.
    async fn write(&self, batch: &mut Batch, stop: &mut watch::Receiver<bool>) -> Result<u64> {
        let mut inserted = 0;
        let mut pending = vec![(0..batch.rows.len()).collect::<Vec<usize>>()];
        let mut whole = true;
        while let Some(part) = pending.pop() {
            // NB: the batch's rows as decoded on receipt; a part of them (only after
            // PostgreSQL refused the whole) is decoded again from the kept bytes.
            let written = if whole {
                self.insert(&batch.rows, stop).await?
            } else {
                self.insert(&batch.rows_at(&part), stop).await?
            };
            whole = false;
            match written {
                Written::Rows(n) => inserted += n,
                Written::Refused(error) => {
                    self.metrics
                        .failures
                        .get_or_create(&FailureLabel::new("write", Class::Permanent))
                        .inc();
                    if let [row] = part[..] {
                        batch.reject_row(row, &refused(&error));
                    } else {
                        tracing::warn!(%error, rows = part.len(), "PostgreSQL refused the rows with a data error: splitting them to isolate the records at fault");
                        let (left, right) = part.split_at(part.len() / 2);
                        pending.push(right.to_vec());
                        pending.push(left.to_vec());
                    }
                }
            }
        }
        Ok(inserted)
    }

    /// Inserts `rows`, retrying transient failures with backoff until they succeed or
    /// shutdown is requested; `/readyz` reports the retry meanwhile.
    async fn insert(&self, rows: &Rows, stop: &mut watch::Receiver<bool>) -> Result<Written> {
        let mut attempt = 0;
        loop {
            let error = match rows.insert(&self.pool).await {
                Ok(n) => {
                    if attempt > 0 {
                        tracing::info!(
                            attempts = attempt + 1,
                            "the batch is written after retrying"
                        );
                        self.health.retrying(None);
                    }
                    return Ok(Written::Rows(n));
                }
                Err(Error::Database(error)) if retry::postgres(&error) == Class::Permanent => {
                    return Ok(Written::Refused(error));
                }
                Err(error) => error,
            };
            attempt += 1;
            self.metrics
                .failures
                .get_or_create(&FailureLabel::new("write", Class::Transient))
                .inc();
            self.health
                .retrying(Some(format!("writing {} rows: {error}", rows.len())));
            let delay = Backoff::SERVICE.random_delay(attempt);
            tracing::warn!(%error, rows = rows.len(), attempt, retry_in = ?delay, "writing the batch failed: retrying, nothing is committed meanwhile");
            if !retry::sleep_unless_stopped(delay, stop).await {
                return Err(Error::Interrupted("postgres"));
            }
        }
    }

    fn record(&self, outcome: &BatchOutcome, rejected: &[Rejected], batch: &Batch, ranges: &str) {
        let m = &self.metrics;
        m.records_in.inc_by(outcome.records);
        m.rows_written.inc_by(outcome.inserted);
        m.duplicates_skipped.inc_by(outcome.duplicates);
        for r in rejected {
            m.rejected
                .get_or_create(&ReasonLabel {
                    reason: r.reason.into(),
                })
                .inc();
        }
        let elapsed = batch.started().map(|t| t.elapsed()).unwrap_or_default();
        m.batch_duration.observe(elapsed.as_secs_f64());
        // NB: "committed": the batch's transaction is committed and its DLQ records are
        // acknowledged; its offsets follow asynchronously (the fault suite reads this line).
        tracing::info!(
            records = outcome.records,
            inserted = outcome.inserted,
            duplicates = outcome.duplicates,
            rejected = outcome.rejected,
            offsets = ranges,
            ms = elapsed.as_millis() as u64,
            "batch committed"
        );
    }
}

/// The rejection for a row PostgreSQL refused on its own.
fn refused(error: &sqlx::Error) -> Rejection {
    match error.as_database_error() {
        Some(db) => Rejection::RejectedByDatabase {
            sqlstate: db.code().map(|c| c.into_owned()).unwrap_or_default(),
            message: db.message().to_owned(),
        },
        None => Rejection::RejectedByDatabase {
            sqlstate: String::new(),
            message: error.to_string(),
        },
    }
}
