//! Platform code, selected by `cfg`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(not(unix))]
compile_error!("axon-engine supports Unix only for now (process groups for agents)");
