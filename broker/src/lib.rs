//! hoop-broker: the one enforcement point between MCP clients and MCP
//! servers. The request path is laid out in [`pipeline`]; each concern it
//! names lives in its own module.

pub mod admin;
pub mod approval;
pub mod audit;
pub mod config;
pub mod crypto;
pub mod identity;
pub mod masking;
pub mod mcp;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod run;
pub mod store;
pub mod tunnel;
pub mod upstream;

pub use run::{start, RunningBroker};
