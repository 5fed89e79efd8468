//! End-to-end suites: every test starts real processes (hoop-broker, hoop,
//! real MCP servers, the official Python and TypeScript SDK clients) on
//! loopback and drives MCP traffic through the whole data path.
//!
//! Needs `bash tests/setup.sh` (pinned npm and pip packages) and the
//! workspace binaries (`cargo build --workspace --bins`); `.ci/run` does both.

#![allow(clippy::unwrap_used)]

mod approvals;
mod audit;
mod completion;
mod conformance;
mod demo;
mod deploy;
mod exec;
mod failures;
mod first_use;
mod identity;
mod login;
mod masking;
mod policy;
mod policy_bypass;
mod policy_reload;
mod relay_notifications;
mod replicas;
mod revisions;
mod stdio_local;
mod tool_drift;
mod tunnel_frames;
