//! Messages every request/reply service shares.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::WireMessage;

/// The answer to any request that could not be read: undecodable, of the wrong type for its
/// subject, of a newer version, or too large. Nothing was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestRejected {
    /// A stable label, e.g. `malformed_envelope` or `wrong_type`.
    pub kind: String,
    /// What was wrong, for people.
    pub reason: String,
}

impl WireMessage for RequestRejected {
    const TYPE: &'static str = "common.RequestRejected";
    const VERSION: u16 = 1;
}
