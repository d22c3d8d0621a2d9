//! RFC 9457 problem details: every error answer of the API, with a stable `type` URI
//! clients can switch on.

use serde::Serialize;
use shop_domain::request::FieldError;

/// Base of every problem `type`; the slug after it never changes meaning.
pub const TYPE_BASE: &str = "https://order-saga.example/problems/";

/// Every kind of error answer the API gives: the `type` slug clients switch on, its
/// title and its status, in one place (`openapi/orders-api.yaml` lists the same types,
/// which a test checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// The request reached the function without verified claims.
    Unauthenticated,
    /// The body names a customer other than the caller.
    CustomerMismatch,
    /// The body is not JSON.
    UnsupportedMediaType,
    /// The body is over the API's limit.
    PayloadTooLarge,
    /// The body does not parse.
    MalformedJson,
    /// The body parses but is not an order request.
    InvalidRequest,
    /// The order breaks a rule; `errors` names the fields.
    ValidationFailed,
    /// A query parameter is out of range.
    InvalidQuery,
    /// The listing cursor was not issued by this API.
    InvalidCursor,
    /// The key is empty, too long or not visible ASCII.
    IdempotencyKeyInvalid,
    /// The key was used with another body.
    IdempotencyKeyReused,
    /// A request with the key is still running.
    IdempotencyKeyInProgress,
    /// No order of the caller has this id.
    OrderNotFound,
    /// Payment has started.
    OrderNotCancellable,
    /// A dependency failed; retrying with the same key is safe.
    ServiceUnavailable,
    /// A bug; it was logged.
    InternalError,
}

impl ProblemType {
    /// Every problem type.
    pub const ALL: [Self; 16] = [
        Self::Unauthenticated,
        Self::CustomerMismatch,
        Self::UnsupportedMediaType,
        Self::PayloadTooLarge,
        Self::MalformedJson,
        Self::InvalidRequest,
        Self::ValidationFailed,
        Self::InvalidQuery,
        Self::InvalidCursor,
        Self::IdempotencyKeyInvalid,
        Self::IdempotencyKeyReused,
        Self::IdempotencyKeyInProgress,
        Self::OrderNotFound,
        Self::OrderNotCancellable,
        Self::ServiceUnavailable,
        Self::InternalError,
    ];

    /// The stable slug after [`TYPE_BASE`].
    pub fn slug(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::CustomerMismatch => "customer-mismatch",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::PayloadTooLarge => "payload-too-large",
            Self::MalformedJson => "malformed-json",
            Self::InvalidRequest => "invalid-request",
            Self::ValidationFailed => "validation-failed",
            Self::InvalidQuery => "invalid-query",
            Self::InvalidCursor => "invalid-cursor",
            Self::IdempotencyKeyInvalid => "idempotency-key-invalid",
            Self::IdempotencyKeyReused => "idempotency-key-reused",
            Self::IdempotencyKeyInProgress => "idempotency-key-in-progress",
            Self::OrderNotFound => "order-not-found",
            Self::OrderNotCancellable => "order-not-cancellable",
            Self::ServiceUnavailable => "service-unavailable",
            Self::InternalError => "internal-error",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Unauthenticated => "Unauthenticated",
            Self::CustomerMismatch => "Not your customer id",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::PayloadTooLarge => "Payload too large",
            Self::MalformedJson => "Malformed JSON",
            Self::InvalidRequest => "Invalid request",
            Self::ValidationFailed => "Validation failed",
            Self::InvalidQuery => "Invalid query",
            Self::InvalidCursor => "Invalid cursor",
            Self::IdempotencyKeyInvalid => "Invalid Idempotency-Key",
            Self::IdempotencyKeyReused => "Idempotency-Key reused",
            Self::IdempotencyKeyInProgress => "Request in progress",
            Self::OrderNotFound => "Order not found",
            Self::OrderNotCancellable => "Order can no longer be cancelled",
            Self::ServiceUnavailable => "Service unavailable",
            Self::InternalError => "Internal error",
        }
    }

    fn status(self) -> u16 {
        match self {
            Self::Unauthenticated => 401,
            Self::CustomerMismatch => 403,
            Self::UnsupportedMediaType => 415,
            Self::PayloadTooLarge => 413,
            Self::MalformedJson => 400,
            Self::InvalidRequest => 400,
            Self::ValidationFailed => 422,
            Self::InvalidQuery => 400,
            Self::InvalidCursor => 400,
            Self::IdempotencyKeyInvalid => 400,
            Self::IdempotencyKeyReused => 422,
            Self::IdempotencyKeyInProgress => 409,
            Self::OrderNotFound => 404,
            Self::OrderNotCancellable => 409,
            Self::ServiceUnavailable => 503,
            Self::InternalError => 500,
        }
    }
}

/// One error answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Stable URI naming the kind of problem.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short summary of the kind.
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// What went wrong in this request.
    pub detail: String,
    /// Fields at fault, when the request body is to blame.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem of the given type.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("{TYPE_BASE}{}", kind.slug()),
            title: kind.title(),
            status: kind.status(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// Adds the fields at fault.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }
}
