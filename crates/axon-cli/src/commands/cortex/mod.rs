//! `axon cortex check` and `axon cortex sync`: a Cortex server as Axon uses it.

mod check;
mod sync;

pub use check::check;
pub use sync::sync;
