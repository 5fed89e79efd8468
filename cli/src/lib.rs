//! hoop, the command line: connect an MCP client to targets behind the broker.
pub mod demo_server;
