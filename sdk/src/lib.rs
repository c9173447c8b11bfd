//! The Footprint browser SDK. Until the SDK issue lands this crate only proves that `footprint-core` builds for
//! `wasm32-unknown-unknown` alongside the browser code that will use it.

pub use footprint_core::limits;
