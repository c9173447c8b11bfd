//! The event model shared by the browser SDK and the collector.
//!
//! Pure by construction: nothing here reads a clock, draws a random number or touches I/O. Time comes
//! in as arguments (epoch milliseconds); the callers own the side effects. Builds for `wasm32` and native.

pub mod consent;
pub mod json_shape;
pub mod limits;
pub mod reason;
pub mod sensitive;
pub mod time;
pub mod validate;
pub mod wire;

pub use reason::RejectCode;
pub use validate::{validate_event, CallKind, IdentityRule, Rejection, ValidEvent};
pub use wire::{BatchEnvelope, ContextField, IdValue, RawObject, WireEvent};
