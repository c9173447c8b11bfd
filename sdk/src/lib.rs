//! The Footprint browser SDK: Rust compiled to WebAssembly (DESIGN.md §2).
//!
//! The pure modules (everything but `api` and `browser`) hold the logic and are unit-tested natively with
//! `cargo test -p footprint-sdk`; `browser/` is the only code that touches Web APIs; `api` holds the only
//! `#[wasm_bindgen]` exports. `js/` (beside `src/`) has the stub snippet, the script-tag loader and the npm entry.

pub mod consent;
pub mod delivery;
pub mod ids;
pub mod json;
pub mod navigation;
pub mod options;
pub mod queue;
pub mod text;
pub mod tracker;
pub mod url;

pub use footprint_core::limits;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod browser;

/// A size-class allocator instead of std's dlmalloc (or talc): see `browser/alloc.rs`.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics"), not(feature = "talc")))]
#[global_allocator]
static ALLOCATOR: browser::alloc::SizeClasses = browser::alloc::SizeClasses::new();

/// `--features talc`: the allocator the research measured, for comparison.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics"), feature = "talc"))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
