//! What a store reports when it fails: a kind the writer acts on (retry,
//! reopen, stop) and a message a person can act on, naming the file.

use std::fmt;

/// Why a store operation failed, as far as the caller needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// No space left for the log (`SQLITE_FULL`, `ENOSPC`).
    DiskFull,
    /// The file, its directory or its mount is read-only, or the store was
    /// opened read-only.
    ReadOnly,
    /// The disk or the operating system reported an error.
    Io,
    /// What the store holds is not a consistent log (or not a log at all).
    Corrupt,
    /// Another process holds the lock the operation needs.
    Busy,
    /// The store was written by a newer version of hoop.
    Version,
    /// The request itself was wrong (a range too large, an entry too big).
    Invalid,
    /// Anything else the backend reported.
    Other,
}

impl StoreErrorKind {
    /// The kind of a failed file operation: full, read-only, or other I/O.
    pub fn of_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Self::DiskFull,
            ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => Self::ReadOnly,
            _ => Self::Io,
        }
    }

    /// The words that open the message.
    fn words(self) -> &'static str {
        match self {
            Self::DiskFull => "disk full",
            Self::ReadOnly => "read-only",
            Self::Io => "I/O error",
            Self::Corrupt => "corrupt",
            Self::Busy => "locked by another process",
            Self::Version => "written by a newer hoop",
            Self::Invalid => "invalid request",
            Self::Other => "storage error",
        }
    }
}

/// A store failure: `disk full (/var/lib/hoop/audit.db): free space …`.
///
/// Cloneable because the writer hands the same failure to every caller
/// whose event was in the failed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    kind: StoreErrorKind,
    location: String,
    detail: String,
}

impl StoreError {
    /// `location` names the file (or database) so the message says where.
    pub fn new(
        kind: StoreErrorKind,
        location: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            location: location.into(),
            detail: detail.into(),
        }
    }

    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// What happened beyond the kind, and what to do about it.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub(crate) fn corrupt(location: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Corrupt, location, detail)
    }

    pub(crate) fn invalid(location: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Invalid, location, detail)
    }

    /// A store whose schema a newer hoop wrote (`supported`: the newest
    /// this one reads).
    pub(crate) fn newer_schema(location: &str, version: i64, supported: i64) -> Self {
        Self::new(
            StoreErrorKind::Version,
            location,
            format!("schema version {version}, this hoop reads up to {supported}: use the newer hoop that wrote it"),
        )
    }
}

/// A seq, size or index as the databases' signed 64-bit integer.
pub(crate) fn sql_int(location: &str, what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::invalid(location, format!("{what} {v} is beyond any log")))
}

/// A signed 64-bit integer read back as a seq, size or index.
pub(crate) fn to_u64(location: &str, what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v)
        .ok()
        .filter(|v| *v <= crate::entry::MAX_TREE_SIZE)
        .ok_or_else(|| StoreError::corrupt(location, format!("{what} is {v}")))
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind.words(), self.location)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_opens_with_the_kind_and_names_the_file() {
        let e = StoreError::new(StoreErrorKind::DiskFull, "/srv/audit.db", "free space");
        assert_eq!(e.to_string(), "disk full (/srv/audit.db): free space");
        let e = StoreError::new(StoreErrorKind::ReadOnly, "/srv/audit.db", "");
        assert_eq!(e.to_string(), "read-only (/srv/audit.db)");
    }
}
