//! Byte layouts of everything batpak writes. Pure: no I/O, no clocks.

pub(crate) mod checkpoint;
pub(crate) mod cursor;
pub(crate) mod record;
pub(crate) mod redo;
pub(crate) mod segment;
pub(crate) mod snapshot;

pub use record::{Encoding, MAX_PAYLOAD_LEN};
