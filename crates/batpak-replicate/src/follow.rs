//! The follower: builds and keeps up a replica store from a sink, in preserve mode
//! (the same ids, sequences, timestamps and hashes, so the source's receipts and
//! anchors hold on it), verifying as it goes: each row's hash is recomputed before
//! it is imported, and the import refuses any event that does not continue the
//! replica exactly (sequence, version, chain link, batch shape).

use std::sync::Arc;
use std::time::Duration;

use batpak::{Store, StoredEvent};

use crate::verify::{row_of, COLUMNS};

/// Rows read per import at most (a batch of the source larger than it comes whole).
const CHUNK: i64 = 1_000;
/// How often a caught-up follower looks for more.
const POLL: Duration = Duration::from_millis(50);

/// Where a follower is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FollowStatus {
    /// The last sequence the replica holds.
    pub position: u64,
    /// The sink's position when last looked at.
    pub source: u64,
    /// Events imported by this follower.
    pub imported: u64,
}

/// Follows the copy in `schema` at `url` into `replica` (a writable store that holds
/// nothing else): until `stop` completes, or, with `until_caught_up`, until it holds
/// what the sink held when it started. Returns the replica's position.
pub async fn follow_postgres(
    replica: Arc<Store>,
    url: &str,
    schema: &str,
    until_caught_up: bool,
    stop: impl std::future::Future<Output = ()>,
    mut on_status: impl FnMut(&FollowStatus),
) -> Result<u64, String> {
    let client = crate::postgres::connect(url, schema).await?;
    tokio::pin!(stop);
    let rows_sql = format!(
        "SELECT {COLUMNS} FROM {schema}.events WHERE sequence > $1 AND sequence <= $2 ORDER BY sequence LIMIT $3"
    );
    let mut status = FollowStatus {
        position: replica.frontier().visible,
        ..FollowStatus::default()
    };
    let mut goal = None;
    loop {
        status.source = crate::postgres::sink_position(&client, schema).await?;
        let source = i64::try_from(status.source).unwrap_or(i64::MAX);
        let goal = *goal.get_or_insert(status.source);
        if status.position >= status.source {
            on_status(&status);
            if until_caught_up && status.position >= goal {
                return Ok(status.position);
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => continue,
                () = &mut stop => return Ok(status.position),
            }
        }
        let after = i64::try_from(status.position).unwrap_or(i64::MAX);
        let mut limit = CHUNK;
        let events = loop {
            let rows = client
                .query(&rows_sql, &[&after, &source, &limit])
                .await
                .map_err(|e| format!("{schema}.events: {e}"))?;
            let mut events: Vec<StoredEvent> = Vec::with_capacity(rows.len());
            for row in &rows {
                let row = row_of(row).map_err(|e| format!("{schema}.events: {e}"))?;
                let event = row.line.to_preserved().map_err(|why| {
                    format!(
                        "the replica stops before sequence {}: the row does not hold: {why}",
                        row.sequence
                    )
                })?;
                events.push(event);
            }
            if (rows.len() as i64) < limit {
                break events;
            }
            // Import whole batches: a chunk that ends inside one leaves that batch
            // for the next round (the sink's position always ends a batch), and a
            // batch longer than the chunk is read whole.
            match crate::replicator::complete_batches(&events) {
                0 => limit *= 2,
                end => {
                    events.truncate(end);
                    break events;
                }
            }
        };
        let count = events.len() as u64;
        let store = Arc::clone(&replica);
        let imported = tokio::task::spawn_blocking(move || store.import_preserved(&events))
            .await
            .map_err(|e| format!("the import did not finish: {e}"))?;
        imported.map_err(|e| format!("the replica refused the copy: {e}"))?;
        status.position = replica.frontier().visible;
        status.imported += count;
        on_status(&status);
    }
}

/// How far a replica is behind the sink it follows: what promoting it would lose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Behind {
    /// The last sequence the replica holds.
    pub replica: u64,
    /// The last sequence the sink holds.
    pub source: u64,
}

impl Behind {
    /// Events the sink holds that the replica does not.
    pub fn missing(&self) -> u64 {
        self.source.saturating_sub(self.replica)
    }
}

/// Compares `replica` with the copy in `schema` at `url` (for promotion: a replica
/// the source is still ahead of would lose the difference).
pub async fn behind_postgres(replica: &Store, url: &str, schema: &str) -> Result<Behind, String> {
    let client = crate::postgres::connect(url, schema).await?;
    let source = crate::postgres::sink_position(&client, schema).await?;
    Ok(Behind {
        replica: replica.frontier().visible,
        source,
    })
}
