//! Where the audit log lives: an SQLite file (the embedded default), or a
//! schema in the PostgreSQL database the broker store uses, shared by every
//! replica. Readers and admin commands open it from here, whichever it is.

use std::path::{Path, PathBuf};

use hoop_audit_log::{AuditStore, Durability, PostgresStore, SqliteStore, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditLocation {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

impl AuditLocation {
    /// The file, for SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(p) => Some(p),
            Self::Postgres { .. } => None,
        }
    }

    /// A reader beside the writers: writes refused.
    pub fn open_read_only(&self) -> Result<Box<dyn AuditStore>, StoreError> {
        Ok(match self {
            Self::Sqlite(p) => Box::new(SqliteStore::open_read_only(p)?),
            Self::Postgres { url, schema } => Box::new(PostgresStore::open_read_only(url, schema)?),
        })
    }

    /// A writer (an admin command recording itself, retention).
    pub fn open(&self, durability: Durability) -> Result<Box<dyn AuditStore>, StoreError> {
        Ok(match self {
            Self::Sqlite(p) => Box::new(SqliteStore::open(p, durability)?),
            Self::Postgres { url, schema } => {
                Box::new(PostgresStore::open(url, schema, durability)?)
            }
        })
    }
}

impl std::fmt::Display for AuditLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            Self::Postgres { url, schema } => write!(
                f,
                "{}",
                crate::store::StoreLocation::Postgres {
                    url: url.clone(),
                    schema: schema.clone(),
                }
            ),
        }
    }
}
