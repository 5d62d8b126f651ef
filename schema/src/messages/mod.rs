//! Message types, one module per area. Each type implements [`crate::WireMessage`] and is
//! listed in [`crate::registry`] so that its JSON Schema and golden vector are generated.

pub mod common;
pub mod eventlog;
pub mod health;
// Wire enums exist to be encoded; boxing their big variants would change only their in-memory
// form, at the cost of every constructor and pattern.
#[allow(clippy::large_enum_variant)]
pub mod inventory;
pub mod labeling;
