//! A fake Cortex server (`axon-testkit`, contract-faithful, with faults) for tests of the real
//! binary: it runs on a runtime of its own, in this test process, while `axon` runs as a child.

use axon_testkit::cortex::{FakeConfig, FakeCortex};

/// A running fake Cortex server and the runtime serving it (dropped in that order).
pub struct Cortex {
    /// The server: its URL, key, state, recorded requests and fault switches.
    pub fake: FakeCortex,
    rt: tokio::runtime::Runtime,
}

impl Cortex {
    /// Starts a fake Cortex server on a random loopback port, with a fresh API key.
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fake = rt.block_on(FakeCortex::start(FakeConfig::default()));
        Self { fake, rt }
    }

    /// Runs `f` on the server's runtime (for fault switches that are async).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}
