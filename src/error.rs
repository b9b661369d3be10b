//! One error type for the API: a fixed code and a message written for the
//! client; internal causes go to the log only, tagged with the request id.

use async_graphql::ErrorExtensions;

use crate::credential_input::InputError;

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
    /// A feature this build does not offer yet; the message says which.
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
        ApiError::Internal(cause.into())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::Internal(e.into())
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

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        ApiError::BadInput(e.0)
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
