use thiserror::Error;

/// What can go wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL {0:?}: expected sqlite://... or postgres://...")]
    UnsupportedUrl(String),
    /// The database refused or failed an operation.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// SQLite refused or failed a statement the writer ran on a connection's handle.
    #[error("database error: {0}")]
    Sqlite(String),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The writer task has stopped (the store is shutting down).
    #[error("the store is shutting down")]
    Closed,
    /// The transaction this write shared with others failed; nothing of it was stored.
    #[error("write failed: {0}")]
    Write(String),
    /// A row could not be read back into a message.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The data directory of an SQLite database could not be created.
    #[error("cannot create {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the database is out of reach (down, restarting, out of connections),
    /// as opposed to a fault in a request or a row: worth a 503 and a retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Closed => true,
            StoreError::Database(e) => matches!(
                e,
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            ),
            _ => false,
        }
    }
}
