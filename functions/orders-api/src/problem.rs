//! RFC 9457 problem details: every error answer of the API, with a stable `type` URI
//! clients can switch on.

use serde::Serialize;
use shop_domain::request::FieldError;

/// Base of every problem `type`; the slug after it never changes meaning.
pub const TYPE_BASE: &str = "https://order-saga.example/problems/";

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
    /// A problem of the given slug.
    pub fn new(slug: &str, title: &'static str, status: u16, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("{TYPE_BASE}{slug}"),
            title,
            status,
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
