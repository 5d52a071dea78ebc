//! Process groups on Unix: each agent runs in its own group, and stopping it signals the
//! whole group so grandchildren die too.

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Puts the child in a new process group of its own.
pub fn own_process_group(cmd: &mut Command) {
    cmd.process_group(0);
}

/// Sends `signal` to the group `pgid`; a group that is already gone is fine.
pub fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else { return };
    if raw <= 1 {
        return; // never signal init's or our own (0) group
    }
    let _ = killpg(Pid::from_raw(raw), signal);
}

/// SIGTERM to the group, then SIGKILL after `grace` if the child has not exited; always
/// reaps the child and finally SIGKILLs the group so no grandchild survives.
pub async fn stop_group(child: &mut Child, pgid: u32, grace: Duration) {
    signal_group(pgid, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    signal_group(pgid, Signal::SIGKILL);
}

/// Kills whatever is left in the group after its leader exited.
pub fn kill_group(pgid: u32) {
    signal_group(pgid, Signal::SIGKILL);
}

/// Makes the calling thread a background one: on Linux it runs only on CPU time nothing else
/// wants (`SCHED_IDLE`); elsewhere at the lowest priority of its policy. The thread cannot
/// raise itself back (that takes privileges), so only threads of background work call it.
///
/// # Errors
/// When the system refuses (the thread keeps its priority).
pub fn lower_current_thread() -> Result<(), thread_priority::Error> {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    #[cfg(target_os = "linux")]
    let policy = NormalThreadSchedulePolicy::Idle;
    #[cfg(not(target_os = "linux"))]
    let policy = NormalThreadSchedulePolicy::Other;
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(policy),
    )
}

/// The process groups of the agents this process is running, for [`kill_all_groups`].
static LIVE_GROUPS: std::sync::Mutex<std::collections::BTreeSet<u32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Keeps an agent's group in the live set until dropped (drop it once the group is dead).
pub struct TrackedGroup(u32);

/// Records `pgid` as a live agent group.
pub fn track_group(pgid: u32) -> TrackedGroup {
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(pgid);
    TrackedGroup(pgid)
}

impl Drop for TrackedGroup {
    fn drop(&mut self) {
        LIVE_GROUPS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// SIGKILLs every live agent group at once (for a process about to exit without waiting).
pub fn kill_all_groups() {
    let groups = LIVE_GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for &pgid in groups.iter() {
        signal_group(pgid, Signal::SIGKILL);
    }
}

/// Kills the process group `pid` if that process is still the agent of `task_id` in `run_id`
/// (its environment says so, which guards against a reused pid). Returns whether it did.
pub fn stop_stale_agent(pid: u32, run_id: uuid::Uuid, task_id: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let run = format!("AXON_RUN_ID={run_id}");
    let task = format!("AXON_TASK_ID={task_id}");
    let mut is_run = false;
    let mut is_task = false;
    for var in environ.split(|&b| b == 0) {
        is_run |= var == run.as_bytes();
        is_task |= var == task.as_bytes();
    }
    if is_run && is_task {
        signal_group(pid, Signal::SIGKILL);
        true
    } else {
        false
    }
}

/// Whether a process with this pid exists (on this host). A zombie — exited, waiting to be
/// reaped by its parent or init — is not alive.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => !is_zombie(pid),
        Err(_) => false,
    }
}

/// Whether `pid` has exited but is not reaped yet (known on Linux only).
fn is_zombie(pid: u32) -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    // `pid (comm) state ...`; comm may itself contain spaces and parentheses.
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next())
        .is_some_and(|state| matches!(state, 'Z' | 'X'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy of the calling thread (field 41 of its `stat`).
    #[cfg(target_os = "linux")]
    fn policy_of_this_thread() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) may hold spaces: count from the closing parenthesis.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(41 - 3).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_lowered_thread_runs_at_idle_priority_and_others_do_not() {
        const SCHED_IDLE: u32 = 5;
        let lowered = std::thread::spawn(|| {
            lower_current_thread().unwrap();
            policy_of_this_thread()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, SCHED_IDLE);
        assert_ne!(
            policy_of_this_thread(),
            SCHED_IDLE,
            "only the calling thread"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_exited_but_unreaped_process_is_not_alive() {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(pid_alive(pid));
        child.kill().unwrap();
        // Wait for the exit without reaping: the child stays a zombie.
        waitid(
            Id::Pid(Pid::from_raw(i32::try_from(pid).unwrap())),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        )
        .unwrap();
        assert!(!pid_alive(pid), "a zombie is not alive");
        child.wait().unwrap();
        assert!(!pid_alive(pid));
        assert!(pid_alive(std::process::id()));
    }
}
