//! The wire contract of Bulkhead: what crosses NATS, and nothing else.
//!
//! Every service depends on this crate and on `bulkhead-runtime`, never on another service
//! (DESIGN.md, principle 3). It owns:
//!
//! ```text
//!   message type (serde + JsonSchema, impl WireMessage)
//!        │  Envelope::wrap / Envelope::open
//!        ▼
//!   Envelope { type, version, id, traceparent, tracestate, sent_at_ms, payload: bin }
//!        │  rmp-serde, maps with field names, size-limited decode
//!        ▼
//!   bytes on a Subject (typed constructors in `subject`)
//! ```
//!
//! The JSON Schema of every message lives in `schema/json/` and golden byte vectors in
//! `schema/golden/`; tests fail when either is stale (`BULKHEAD_BLESS=1` regenerates them).

mod envelope;
pub mod messages;
mod registry;
mod subject;
#[cfg(feature = "testing")]
pub mod testing;

pub use envelope::{
    DEFAULT_MAX_MESSAGE_BYTES, DecodeError, Decoded, EncodeError, Envelope, WireMessage,
};
pub use registry::{MessageInfo, envelope_json_schema, registry};
pub use subject::{Subject, SubjectError};
