//! One error type for the API: a fixed code and a message written for the
//! client; internal causes go to the log only, tagged with the request id.

use async_graphql::ErrorExtensions;

tokio::task_local! {
    /// The id of the HTTP request being served, so internal errors can be
    /// correlated between the client's report and the server log.
    pub static REQUEST_ID: String;
}

/// Deliberately not `Display`: async-graphql turns any `Display` error into a
/// client message, and internal causes must never reach a client that way.
#[derive(Debug)]
pub enum ApiError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    BadInput(String),
    /// Nothing usable to hand a task: the message says what to configure.
    NoCredentials(String),
    /// A temporary limit was hit (e.g. too many pending sign-in flows).
    Limit(String),
    /// A feature this build does not offer yet, or the database cannot take
    /// the request right now (see [`db_unavailable`]); the message says which.
    Unavailable(String),
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::BadInput(_) => "BAD_USER_INPUT",
            ApiError::NoCredentials(_) => "NO_CREDENTIALS",
            ApiError::Limit(_) => "LIMIT_EXCEEDED",
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    pub fn bad_input(msg: impl Into<String>) -> Self {
        ApiError::BadInput(msg.into())
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn forbidden(msg: impl Into<String>) -> Self {
        ApiError::Forbidden(msg.into())
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        let cause = cause.into();
        // A database error passed through as a cause is still temporary.
        let unavailable = cause.chain().find_map(|e| {
            e.downcast_ref::<sea_orm::DbErr>()
                .and_then(db_unavailable)
                .or_else(|| e.downcast_ref::<sqlx::Error>().and_then(sqlx_unavailable))
        });
        match unavailable {
            Some(why) => {
                tracing::warn!(error = format!("{cause:#}"), "database unavailable");
                ApiError::Unavailable(why.message().into())
            }
            None => ApiError::Internal(cause),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        match db_unavailable(&e) {
            Some(why) => {
                // The cause goes to the log; the client is told to try again.
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable(why.message().into())
            }
            None => ApiError::Internal(e.into()),
        }
    }
}

/// Why the database cannot take a request right now, when that passes by
/// itself or with the operator's help (a retry can succeed): the client
/// gets UNAVAILABLE, never INTERNAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbUnavailable {
    /// SQLITE_FULL: nothing was saved.
    DiskFull,
    /// SQLITE_BUSY / SQLITE_LOCKED: another process holds the write lock.
    Busy,
    /// A lost or refused connection, a pool timeout, an I/O error.
    Connection,
}

impl DbUnavailable {
    pub fn message(self) -> &'static str {
        match self {
            DbUnavailable::DiskFull => "the vault's disk is full, so nothing was saved; try again in a moment",
            DbUnavailable::Busy => "the database is busy; try again in a moment",
            DbUnavailable::Connection => "the database is unavailable right now; try again in a moment",
        }
    }
}

/// Set when a write failed because the disk is full; `/ready` answers 503
/// while it is set, and clears it once a write commits again
/// (`Store::write_blocked`).
pub static DISK_FULL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The one place that decides which database errors are temporary.
pub fn db_unavailable(e: &sea_orm::DbErr) -> Option<DbUnavailable> {
    let why = db_unavailable_inner(e);
    if why == Some(DbUnavailable::DiskFull) {
        DISK_FULL.store(true, std::sync::atomic::Ordering::Release);
    }
    why
}

fn db_unavailable_inner(e: &sea_orm::DbErr) -> Option<DbUnavailable> {
    use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};
    match e {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => {
            Some(DbUnavailable::Connection)
        }
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => sqlx_unavailable_inner(e),
        // sea-orm's own words for a connection it no longer has.
        DbErr::Conn(RuntimeErr::Internal(_)) => Some(DbUnavailable::Connection),
        _ => None,
    }
}

/// As [`db_unavailable`], for an error straight from sqlx.
pub fn sqlx_unavailable(e: &sqlx::Error) -> Option<DbUnavailable> {
    let why = sqlx_unavailable_inner(e);
    if why == Some(DbUnavailable::DiskFull) {
        DISK_FULL.store(true, std::sync::atomic::Ordering::Release);
    }
    why
}

fn sqlx_unavailable_inner(e: &sqlx::Error) -> Option<DbUnavailable> {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(DbUnavailable::Connection),
        // A connection cut mid-message.
        sqlx::Error::Protocol(m) if m.contains("closed") || m.contains("unexpected end") => {
            Some(DbUnavailable::Connection)
        }
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            // Decided by the backend, not by the code's shape: SQLSTATEs such
            // as 08006 or 22021 are all digits too.
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                sqlite_unavailable(code.parse().ok()?)
            } else {
                postgres_unavailable(&code)
            }
        }
        _ => None,
    }
}

/// SQLite: extended result codes; the primary code is the low byte.
fn sqlite_unavailable(extended: i32) -> Option<DbUnavailable> {
    match extended & 0xff {
        13 => Some(DbUnavailable::DiskFull),        // SQLITE_FULL
        5 | 6 => Some(DbUnavailable::Busy),         // SQLITE_BUSY, SQLITE_LOCKED
        10 | 14 => Some(DbUnavailable::Connection), // SQLITE_IOERR, SQLITE_CANTOPEN
        _ => None,
    }
}

/// PostgreSQL: SQLSTATE. 08: connection exception; 57P01-03: the server is
/// shutting down or starting; 53300: too many connections; 53100: disk
/// full; 40001/40P01: serialization failure, deadlock.
fn postgres_unavailable(sqlstate: &str) -> Option<DbUnavailable> {
    match sqlstate {
        c if c.starts_with("08") => Some(DbUnavailable::Connection),
        "57P01" | "57P02" | "57P03" | "53300" => Some(DbUnavailable::Connection),
        "53100" => Some(DbUnavailable::DiskFull),
        "40001" | "40P01" => Some(DbUnavailable::Busy),
        _ => None,
    }
}

impl From<sea_orm::TransactionError<ApiError>> for ApiError {
    fn from(e: sea_orm::TransactionError<ApiError>) -> Self {
        match e {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(api) => api,
        }
    }
}

impl From<crate::crypto::DecryptError> for ApiError {
    fn from(e: crate::crypto::DecryptError) -> Self {
        ApiError::Internal(e.into())
    }
}

/// For commands: an API error becomes a plain error with its client message.
pub fn api_to_anyhow(e: ApiError) -> anyhow::Error {
    match e {
        ApiError::Internal(cause) => cause,
        other => anyhow::anyhow!("{}", async_graphql::Error::from(other).message),
    }
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| uuid::Uuid::new_v4().to_string())
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        let code = e.code();
        let message = match e {
            ApiError::Internal(cause) => {
                let request_id = current_request_id();
                tracing::error!(request_id = %request_id, error = format!("{cause:#}"), "internal error");
                return async_graphql::Error::new(format!(
                    "internal error; report request id {request_id} to the operator"
                ))
                .extend_with(|_, ext| {
                    ext.set("code", code);
                    ext.set("requestId", request_id.clone());
                });
            }
            ApiError::Unauthenticated(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::BadInput(m)
            | ApiError::NoCredentials(m)
            | ApiError::Limit(m)
            | ApiError::Unavailable(m) => m,
        };
        async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", code))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod unavailable_tests {
    use super::*;

    #[test]
    fn sqlstates_are_not_read_as_sqlite_codes() {
        for (code, want) in [
            ("08006", Some(DbUnavailable::Connection)),
            ("08000", Some(DbUnavailable::Connection)),
            ("53300", Some(DbUnavailable::Connection)),
            ("53100", Some(DbUnavailable::DiskFull)),
            ("40001", Some(DbUnavailable::Busy)),
            ("40P01", Some(DbUnavailable::Busy)),
            // Client errors stay client errors (22021: a NUL byte in text).
            ("22021", None),
            ("22022", None),
            ("42501", None),
            ("23505", None),
        ] {
            assert_eq!(postgres_unavailable(code), want, "{code}");
        }
        assert_eq!(sqlite_unavailable(13), Some(DbUnavailable::DiskFull));
        assert_eq!(sqlite_unavailable(5 | (3 << 8)), Some(DbUnavailable::Busy));
        assert_eq!(sqlite_unavailable(19), None); // SQLITE_CONSTRAINT
    }
}
