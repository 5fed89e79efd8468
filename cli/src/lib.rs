//! hoop, the command line: connect unmodified MCP clients to targets behind
//! the hoop broker. The CLI carries bytes and shows things to a person; the
//! broker decides.

pub mod auth;
pub mod commands;
pub mod demo_server;
pub mod local;
pub mod settings;
pub mod tui;
pub mod tunnel;
