//! An optional suite against a real Cortex server: it runs only when `AXON_TEST_CORTEX_URL`
//! names one (`http://HOST:PORT`; the API key, if the server wants one, in
//! `AXON_TEST_CORTEX_API_KEY`). Otherwise each test says it was skipped, on standard error,
//! and passes.
//!
//! What it checks is what the fake server cannot prove: that `axon cortex check` passes
//! against the real thing, and that a small tracked run creates and completes its Cortex
//! tasks there. The tasks it finds are deleted afterwards, even when an assertion fails.
//! It talks to the server with a minimal blocking HTTP/1.0 client ([`http`]), plain `http://`
//! only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::run::{Ws, one_agent, summary, workflow};
use crate::{assert_exit, axon, stderr, stdout};

/// The real server's base URL and API key, or `None` (after saying the suite is skipped).
fn real_server() -> Option<(String, Option<String>)> {
    let url = std::env::var("AXON_TEST_CORTEX_URL").unwrap_or_default();
    let url = url.trim().trim_end_matches('/');
    if url.is_empty() {
        eprintln!(
            "skipped: AXON_TEST_CORTEX_URL is not set (point it at a real Cortex server to run this suite)"
        );
        return None;
    }
    let key = std::env::var("AXON_TEST_CORTEX_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty());
    Some((url.to_owned(), key))
}

/// `METHOD PATH` on the server at `base` (`http://HOST[:PORT]`), over HTTP/1.0 (so the server
/// closes the connection after its answer), with `Authorization: ApiKey KEY` when given and a
/// JSON `body` when given: the status and the body.
///
/// # Errors
/// When `base` is not `http://HOST[:PORT]`, or the exchange fails.
pub(crate) fn http(
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let unsupported = || {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("only http://HOST[:PORT] is supported here, not {base}"),
        )
    };
    let authority = base.strip_prefix("http://").ok_or_else(unsupported)?;
    if authority.contains('/') || authority.is_empty() {
        return Err(unsupported());
    }
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = TcpStream::connect(&addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\n");
    if let Some(key) = key {
        request.push_str(&format!("Authorization: ApiKey {key}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Ok((
        status,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_owned()
        },
    ))
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// `data` of a successful enveloped answer to `GET PATH`.
fn get_data(base: &str, key: Option<&str>, path: &str) -> Value {
    let (status, body) =
        http(base, "GET", path, key, None).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    let v: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
    assert_eq!(v["success"], true, "GET {path}: {v:#}");
    v["data"].clone()
}

/// Deletes the Cortex tasks it holds when dropped, whatever happened.
struct Cleanup {
    base: String,
    key: Option<String>,
    ids: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in &self.ids {
            let path = format!("/api/v1/tasks/{id}");
            match http(&self.base, "DELETE", &path, self.key.as_deref(), None) {
                Ok((200, _)) => {}
                other => eprintln!("could not delete Cortex task {id}: {other:?}"),
            }
        }
    }
}

/// The Cortex tasks tagged `tag` (the server matches any of the tags given).
fn tasks_tagged(base: &str, key: Option<&str>, tag: &str) -> Vec<Value> {
    let data = get_data(base, key, &format!("/api/v1/tasks?tags={tag}"));
    data.as_array()
        .unwrap_or_else(|| panic!("not a list: {data:#}"))
        .iter()
        .filter(|t| {
            t["tags"]
                .as_array()
                .is_some_and(|tags| tags.iter().any(|x| x == tag))
        })
        .cloned()
        .collect()
}

/// `--cortex-url URL` and, when there is one, `--cortex-api-key KEY`.
fn cortex_flags(url: &str, key: Option<&str>) -> Vec<String> {
    let mut flags = vec!["--cortex-url".to_owned(), url.to_owned()];
    if let Some(key) = key {
        flags.extend(["--cortex-api-key".to_owned(), key.to_owned()]);
    }
    flags
}

/// `axon cortex check` passes against the real server (every check with a key; the checks
/// tracking needs without one), and never prints the key.
#[test]
fn real_cortex_passes_axon_cortex_check() {
    if let Some((url, key)) = real_server() {
        check_passes(&url, key.as_deref());
    }
}

/// The body of [`real_cortex_passes_axon_cortex_check`], against the server at `url`.
fn check_passes(url: &str, key: Option<&str>) {
    let key = key.map(str::to_owned);
    let mut args = vec!["cortex".to_owned(), "check".to_owned()];
    args.extend(cortex_flags(url, key.as_deref()));
    if key.is_none() {
        args.extend(["--cortex-roles".to_owned(), "tracking".to_owned()]);
    }
    let out = axon()
        .args(&args)
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    eprintln!("{}", stdout(&out));
    assert_exit(&out, 0);
    let summary = stdout(&out)
        .lines()
        .find(|l| l.starts_with("cortex at "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no summary line:\n{}", stdout(&out)));
    assert!(summary.contains("checks passed"), "{summary}");
    if let Some(key) = &key {
        assert!(!stdout(&out).contains(key.as_str()) && !stderr(&out).contains(key.as_str()));
    }
}

/// A small run tracked on the real server creates its workflow task (tagged `axon` and
/// `axon-run:<run_id>`) and one task per Axon task (tagged `axon-parent:<workflow task>` and
/// `axon-task:<id>`), every one `done` when `axon run` exits; they are deleted afterwards.
#[test]
fn real_cortex_tracks_a_small_run_to_done() {
    if let Some((url, key)) = real_server() {
        tracks_a_small_run(&url, key.as_deref());
    }
}

/// The body of [`real_cortex_tracks_a_small_run_to_done`], against the server at `url`;
/// returns the ids of the Cortex tasks it found (and deleted).
fn tracks_a_small_run(url: &str, key: Option<&str>) -> Vec<String> {
    let (url, key) = (url.to_owned(), key.map(str::to_owned));
    let ws = Ws::new();
    ws.agents(&one_agent("worker", 2), "sleep 0.1");
    let mut args: Vec<String> = vec![
        "run".into(),
        workflow("quick.yaml").to_string_lossy().into_owned(),
        "--agents".into(),
        ws.file("agents.yaml").to_string_lossy().into_owned(),
        "--workspace".into(),
        ws.path().to_string_lossy().into_owned(),
        "--json".into(),
        "--cortex-roles".into(),
        "tracking".into(),
    ];
    args.extend(cortex_flags(&url, key.as_deref()));
    let out = ws.axon(&args);
    let err = stderr(&out);
    eprintln!("{err}");
    assert_exit(&out, 0);
    let s = summary(&out);
    let run_id = s["run_id"].as_str().unwrap().to_owned();
    let mut cleanup = Cleanup {
        base: url.clone(),
        key: key.clone(),
        ids: Vec::new(),
    };
    let run_tag = format!("axon-run:{run_id}");
    let workflows = tasks_tagged(&url, key.as_deref(), &run_tag);
    cleanup.ids.extend(
        workflows
            .iter()
            .filter_map(|t| t["id"].as_str())
            .map(str::to_owned),
    );
    assert_eq!(workflows.len(), 1, "{workflows:#?}");
    let wf = &workflows[0];
    let wf_id = wf["id"].as_str().unwrap().to_owned();
    assert_eq!(wf["title"], "Quick", "{wf:#}");
    assert!(
        wf["tags"].as_array().unwrap().iter().any(|t| t == "axon"),
        "{wf:#}"
    );
    let tasks = tasks_tagged(&url, key.as_deref(), &format!("axon-parent:{wf_id}"));
    cleanup.ids.extend(
        tasks
            .iter()
            .filter_map(|t| t["id"].as_str())
            .map(str::to_owned),
    );
    assert!(
        !err.contains("not delivered yet"),
        "the run left tracking updates undelivered:\n{err}"
    );
    assert_eq!(wf["status"], "done", "{wf:#}");
    let mut ids: Vec<String> = tasks
        .iter()
        .flat_map(|t| t["tags"].as_array().unwrap().iter())
        .filter_map(|t| t.as_str()?.strip_prefix("axon-task:").map(str::to_owned))
        .collect();
    ids.sort();
    assert_eq!(ids, ["one", "two"], "{tasks:#?}");
    for t in &tasks {
        assert_eq!(t["status"], "done", "{t:#}");
    }
    cleanup.ids.clone()
}

/// The suite's own bodies, against the fake server, so that they keep working while nobody
/// runs them against a real one: the check passes, the run's three Cortex tasks are found
/// `done` and deleted afterwards.
#[test]
fn the_real_suite_passes_against_the_fake_server() {
    let cortex = crate::fake_cortex::Cortex::start();
    let url = cortex.fake.url();
    check_passes(&url, Some(cortex.fake.api_key()));
    check_passes(&url, None);
    let found = tracks_a_small_run(&url, None);
    assert_eq!(found.len(), 3, "{found:?}");
    let state = cortex.fake.state();
    assert!(state.tasks.is_empty(), "not deleted: {:#?}", state.tasks);
    for id in &found {
        assert!(state.deleted_tasks.contains(id), "{id} was not deleted");
    }
}
