//! Size limits that the codec enforces before it allocates anything.

/// Largest frame accepted by default (type byte + payload). A single MCP
/// message (one JSON-RPC object) must fit: tool results of tens of MiB exist,
/// so the default is generous; the broker may configure a smaller one.
pub const DEFAULT_MAX_FRAME_LEN: usize = 64 * 1024 * 1024;

/// Largest string field (target names, tokens, header values, reasons).
/// Bounded separately so a small frame cannot claim a huge string.
pub const MAX_STRING_LEN: usize = 1024 * 1024;

/// Largest number of entries in a list field (groups, `Mcp-Param-*` headers).
pub const MAX_LIST_LEN: usize = 1024;
