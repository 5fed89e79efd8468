//! The log's background threads step aside for the request path.
//!
//! Behind the journal, nothing a call waits for runs on the writer, its
//! notifier or the WAL checkpointer: a call is durable once its record is
//! in the journal. Their work (indexing records into SQLite, signing
//! checkpoints, copying the WAL back) still took a core for a millisecond
//! or two every batch, and on a machine with few cores that core was one
//! the broker's request path, the upstream or the client was waiting
//! for. That, not the journal write, was most of what recording added to
//! a call's tail (docs/benchmarks.md, "The audit layer, fifth sitting").
//!
//! So these threads run under `SCHED_IDLE`: any runnable thread of normal
//! priority preempts them at once, and they use what is left idle. They
//! cannot fall behind for good: the queue in front of the writer is
//! bounded, so once it is full appenders wait, the request path idles and
//! the writer runs. Linux only; elsewhere they keep normal priority.

/// Puts the calling thread under `SCHED_IDLE`; `thread` names it for the
/// log line a refusal leaves (the thread then runs at normal priority).
pub(crate) fn step_aside(thread: &str) {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadSchedulePolicy,
        };
        use thread_priority::ThreadPriority;
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(e) =
            set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle)
        {
            // Recording still works; only its cost to calls' tail returns.
            tracing::warn!(
                "{thread}: cannot run under SCHED_IDLE ({e:?}), so it keeps normal priority \
                 and may add to calls' tail latency; if a seccomp profile refuses \
                 sched_setscheduler, allow it for hoop-broker"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}
