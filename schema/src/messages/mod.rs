//! Message types, one module per area. Each type implements [`crate::WireMessage`] and is
//! listed in [`crate::registry`] so that its JSON Schema and golden vector are generated.

pub mod common;
pub mod eventlog;
pub mod health;
pub mod inventory;
