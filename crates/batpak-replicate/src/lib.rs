//! Replication of a batpak store into the engines users grow into: PostgreSQL and NATS
//! JetStream. The journal is the outbox: a [`Replicator`] ships the
//! lossless export form of every record, in sequence order and bounded batches, into
//! a [`Sink`] that keeps its own position with the rows (in the same transaction in
//! PostgreSQL; as the stream's last message in JetStream), so every event lands
//! exactly once however often the replicator is killed; anchors of the store and its
//! compaction manifest travel too, so every copy verifies on its own
//! ([`verify_postgres`], [`verify_jetstream`]) and can be followed into a replica
//! ([`follow_postgres`], [`follow_jetstream`]). The library stays synchronous; this
//! crate runs the engines' async clients on tokio.

mod follow;
mod jetstream;
mod jetstream_read;
mod postgres;
mod replicator;
mod sink;
mod verify;

pub use follow::{behind_postgres, follow_postgres, Behind, FollowStatus};
pub use jetstream::{check_name, event_subject, stream_name, subject_token, JetStreamSink};
pub use jetstream_read::{behind_jetstream, follow_jetstream, verify_jetstream};
pub use postgres::{check_schema, PostgresSink};
pub use replicator::{
    Control, ReplicateError, Replicator, Status, DEFAULT_ANCHOR_EVERY, DEFAULT_BATCH,
};
pub use sink::{Sink, SinkError};
pub use verify::{verify_postgres, ReplicaProblem, ReplicaReport};
