//! Serves the contract-faithful fake Cortex server on its own, for trying Axon's Cortex
//! features by hand: `cargo run -p axon-testkit --bin fake-cortex -- [PORT] [API_KEY]`.
//!
//! It prints the URL and the API key to use, then serves (in memory) until interrupted, and
//! at exit prints what it holds: tasks with their status and tags, sessions, merges. Its
//! memory holds a few sample episodes (about release notes, for `examples/cortex/`), since
//! Cortex has no REST route to record one.

use axon_testkit::cortex::{Episode, FakeConfig, FakeCortex};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = match args.next().map(|p| p.parse()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            eprintln!("usage: fake-cortex [PORT] [API_KEY]");
            std::process::exit(2);
        }
    };
    let config = match args.next() {
        Some(key) => FakeConfig::with_api_key(key),
        None => FakeConfig::default(),
    };
    let cortex = match FakeCortex::start_on(port, config).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fake-cortex: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    cortex.seed_memory([
        Episode::new(
            "ep-notes-1",
            "release notes drafted from the changelog of 0.9",
            "task",
        ),
        Episode::new(
            "ep-notes-2",
            "checked the release notes: the migration note was missing",
            "bugfix",
        ),
        Episode::new(
            "ep-deploy-1",
            "published the docs site after a deploy",
            "task",
        ),
    ]);
    println!("fake Cortex server at {}", cortex.url());
    println!("export AXON_CORTEX_URL={}", cortex.url());
    println!("export AXON_CORTEX_API_KEY={}", cortex.api_key());
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    let state = cortex.state();
    println!("\n{} tasks:", state.tasks.len());
    for t in &state.tasks {
        println!("  {} {:?} {:?} tags {:?}", t.id, t.status, t.title, t.tags);
    }
    println!(
        "{} sessions left, {} merges",
        state.sessions.len(),
        state.merges.len()
    );
}
