//! Parsing and validating `POST /v1/orders` bodies. Every rejection names the field,
//! so a client can fix its request without reading logs.

use crate::order::{Currency, CustomerId, Sku};
use serde::{Deserialize, Serialize};

/// Largest request body accepted; larger bodies are refused before parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
use crate::lines::{LineViolation, MAX_SKU_LEN, is_identifier};
pub use crate::lines::{MAX_LINES, MAX_QUANTITY};

/// The body as the client sent it: shapes only, nothing trusted yet.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrderBody {
    /// The caller's own customer id, optional: the customer is the token's subject.
    /// Clients written before identity came from the token may still send it; it
    /// must then be the caller.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// ISO 4217 code.
    pub currency: String,
    /// Payment method token from the payment provider's client-side SDK.
    pub payment_token: String,
    /// Requested lines.
    pub lines: Vec<RequestedLineBody>,
    /// Express delivery: the order takes the priority lane (its own intake queue).
    #[serde(default)]
    pub express: bool,
}

/// One requested line as sent by the client. Quantity is signed here so a negative
/// value is reported as out of range rather than as a type error.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestedLineBody {
    /// Catalog SKU.
    pub sku: String,
    /// Units wanted.
    #[serde(deserialize_with = "integral")]
    pub quantity: i64,
}

/// An integer, also when written as a number with no fraction (`2.0`): JSON Schema, and
/// so the OpenAPI document, counts that as an integer, and clients generated from it
/// may send it.
fn integral<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number.as_i64() {
        return Ok(n);
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        Some(f) if f.fract() == 0.0 => Ok(if f < 0.0 { i64::MIN } else { i64::MAX }),
        _ => Err(serde::de::Error::custom(format!(
            "invalid type: {number}, expected an integer"
        ))),
    }
}

/// A request that passed every rule that does not need the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrderRequest {
    /// The caller, who owns the order.
    pub customer_id: CustomerId,
    /// Currency to price in.
    pub currency: Currency,
    /// Payment method token.
    pub payment_token: String,
    /// Lines with distinct SKUs.
    pub lines: Vec<(Sku, u32)>,
    /// Whether the order takes the priority lane.
    pub express: bool,
}

/// One broken rule, with the JSON path of the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON path such as `lines[2].quantity`.
    pub field: String,
    /// What is wrong, in words a client developer understands.
    pub detail: String,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("request body is {0} bytes; the limit is {MAX_BODY_BYTES}")]
    TooLarge(usize),
    /// Not JSON at all.
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// JSON, but a field is missing, unknown or of the wrong type.
    #[error("field `{field}`: {detail}")]
    Shape {
        /// Path of the offending field.
        field: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Well-formed, but breaks one or more business rules.
    #[error("{} field(s) failed validation", .0.len())]
    Invalid(Vec<FieldError>),
    /// `customerId` names someone other than the caller.
    #[error("customerId must be the caller's own id (the token's subject) or absent")]
    NotTheCaller,
}

/// Parses and validates a body placed by `caller` in one step.
pub fn parse_place_order(
    body: &[u8],
    caller: &CustomerId,
) -> Result<PlaceOrderRequest, RequestError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(RequestError::TooLarge(body.len()));
    }
    let raw = parse_json_shape::<PlaceOrderBody>(body)?;
    validate(raw, caller)
}

/// Deserializes JSON, telling syntax errors apart from shape errors and naming the
/// field of the latter.
pub fn parse_json_shape<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| RequestError::MalformedJson(e.to_string()))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        RequestError::Shape {
            field: if path == "." {
                String::from("(body)")
            } else {
                path
            },
            detail: e.into_inner().to_string(),
        }
    })
}

/// Applies the rules that need no catalog: sizes, ranges, formats, duplicates, and
/// that a `customerId`, if sent, is the caller.
pub fn validate(
    raw: PlaceOrderBody,
    caller: &CustomerId,
) -> Result<PlaceOrderRequest, RequestError> {
    if raw
        .customer_id
        .as_deref()
        .is_some_and(|id| id != caller.as_str())
    {
        return Err(RequestError::NotTheCaller);
    }
    let mut errors = Vec::new();
    let mut fail = |field: String, detail: &str| {
        errors.push(FieldError {
            field,
            detail: detail.to_owned(),
        })
    };
    let currency = Currency::parse(&raw.currency);
    if currency.is_none() {
        fail("currency".into(), "must be one of EUR, USD, GBP");
    }
    if !is_identifier(&raw.payment_token, 128) {
        fail(
            "paymentToken".into(),
            "must be 1-128 characters of letters, digits, '-', '_' or '.'",
        );
    }
    let line_rules =
        crate::lines::violations(raw.lines.iter().map(|l| (l.sku.as_str(), l.quantity)));
    for violation in &line_rules {
        match *violation {
            LineViolation::Count(_) => fail(
                "lines".into(),
                &format!("must have between 1 and {MAX_LINES} lines"),
            ),
            LineViolation::Sku(i) => fail(
                format!("lines[{i}].sku"),
                &format!("must be 1-{MAX_SKU_LEN} characters of letters, digits, '-', '_' or '.'"),
            ),
            LineViolation::Duplicate(i) => fail(
                format!("lines[{i}].sku"),
                "appears more than once; combine the quantities into one line",
            ),
            LineViolation::Quantity(i) => fail(
                format!("lines[{i}].quantity"),
                &format!("must be between 1 and {MAX_QUANTITY}"),
            ),
        }
    }
    let lines: Vec<(Sku, u32)> = raw
        .lines
        .iter()
        .filter_map(|l| Some((Sku(l.sku.clone()), u32::try_from(l.quantity).ok()?)))
        .collect();
    match currency {
        Some(currency) if errors.is_empty() => Ok(PlaceOrderRequest {
            customer_id: caller.clone(),
            currency,
            payment_token: raw.payment_token,
            lines,
            express: raw.express,
        }),
        _ => Err(RequestError::Invalid(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body(lines: &str) -> Vec<u8> {
        format!(r#"{{"currency":"EUR","paymentToken":"tok_approve","lines":{lines}}}"#).into_bytes()
    }

    fn caller() -> CustomerId {
        CustomerId("c-1".into())
    }

    fn parse_place_order(body: &[u8]) -> Result<PlaceOrderRequest, RequestError> {
        super::parse_place_order(body, &caller())
    }

    #[test]
    fn the_customer_is_the_caller_and_a_body_customer_id_must_be_the_caller() {
        let own = br#"{"customerId":"c-1","currency":"EUR","paymentToken":"t","lines":[{"sku":"A","quantity":1}]}"#;
        assert_eq!(parse_place_order(own).unwrap().customer_id, caller());
        let absent = parse_place_order(&body(r#"[{"sku":"A","quantity":1}]"#)).unwrap();
        assert_eq!(absent.customer_id, caller());
        let other = br#"{"customerId":"c-2","currency":"EUR","paymentToken":"t","lines":[{"sku":"A","quantity":1}]}"#;
        assert_eq!(parse_place_order(other), Err(RequestError::NotTheCaller));
    }

    #[test]
    fn accepts_a_valid_order() {
        let req = parse_place_order(&body(r#"[{"sku":"SKU-1","quantity":2}]"#)).unwrap();
        assert_eq!(req.lines, vec![(Sku("SKU-1".into()), 2)]);
        assert_eq!(req.currency, Currency::EUR);
    }

    #[test]
    fn express_is_an_optional_boolean() {
        let standard = parse_place_order(&body(r#"[{"sku":"A","quantity":1}]"#)).unwrap();
        assert!(!standard.express);
        let raw = br#"{"currency":"EUR","paymentToken":"t","express":true,"lines":[{"sku":"A","quantity":1}]}"#;
        assert!(parse_place_order(raw).unwrap().express);
        let wrong = br#"{"currency":"EUR","paymentToken":"t","express":"yes","lines":[{"sku":"A","quantity":1}]}"#;
        let err = parse_place_order(wrong).unwrap_err();
        assert!(
            matches!(&err, RequestError::Shape { field, .. } if field == "express"),
            "{err:?}"
        );
    }

    #[test]
    fn names_the_field_of_a_wrong_type() {
        let err = parse_place_order(&body(r#"[{"sku":"SKU-1","quantity":"two"}]"#)).unwrap_err();
        assert!(
            matches!(&err, RequestError::Shape { field, .. } if field == "lines[0].quantity"),
            "{err:?}"
        );
    }

    #[test]
    fn names_an_unknown_field() {
        let err =
            parse_place_order(br#"{"currency":"EUR","paymentToken":"t","lines":[],"price":1}"#)
                .unwrap_err();
        assert!(
            matches!(&err, RequestError::Shape { detail, .. } if detail.contains("price")),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_negative_huge_and_zero_quantities_by_field() {
        for q in ["-1", "0", "1001", "99999999999999999999"] {
            let err = parse_place_order(&body(&format!(r#"[{{"sku":"A","quantity":{q}}}]"#)))
                .unwrap_err();
            let field = match err {
                RequestError::Invalid(errors) => errors[0].field.clone(),
                RequestError::Shape { field, .. } => field,
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(field, "lines[0].quantity", "quantity {q}");
        }
    }

    #[test]
    fn rejects_bad_currency_duplicates_and_empty_lines() {
        let err =
            parse_place_order(br#"{"currency":"XXX","paymentToken":"t","lines":[]}"#).unwrap_err();
        let RequestError::Invalid(errors) = err else {
            panic!("expected validation errors")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["currency", "lines"]);

        let err = parse_place_order(&body(
            r#"[{"sku":"A","quantity":1},{"sku":"A","quantity":2}]"#,
        ))
        .unwrap_err();
        assert!(matches!(err, RequestError::Invalid(e) if e[0].field == "lines[1].sku"));
    }

    #[test]
    fn a_quantity_written_with_no_fraction_is_an_integer() {
        let quantity = |q: &str| {
            let raw = format!(r#"{{"sku":"A","quantity":{q}}}"#);
            serde_json::from_str::<RequestedLineBody>(&raw).map(|l| l.quantity)
        };
        assert_eq!(quantity("2.0").unwrap(), 2);
        assert_eq!(quantity("-3.0").unwrap(), -3);
        assert_eq!(quantity("8.0e15").unwrap(), 8_000_000_000_000_000);
        // Past what a double holds exactly, the value only matters as "too many".
        assert_eq!(quantity("9.0e15").unwrap(), i64::MAX);
        assert_eq!(quantity("1e20").unwrap(), i64::MAX);
        assert_eq!(quantity("-1e20").unwrap(), i64::MIN);
        for fractional in ["2.5", "-0.5", "1e-3"] {
            assert!(quantity(fractional).is_err(), "{fractional}");
        }
    }

    #[test]
    fn a_body_up_to_64_kib_is_read() {
        let order = body(r#"[{"sku":"A","quantity":1}]"#);
        let mut padded = order.clone();
        padded.resize(64 * 1024, b' ');
        assert!(parse_place_order(&padded).is_ok());
    }

    #[test]
    fn rejects_oversized_and_malformed_bodies() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            parse_place_order(&big),
            Err(RequestError::TooLarge(MAX_BODY_BYTES + 1))
        );
        assert!(matches!(
            parse_place_order(b"{\"customerId\":"),
            Err(RequestError::MalformedJson(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_place_order(&bytes);
        }

        #[test]
        fn a_quantity_written_with_a_zero_fraction_counts_as_that_integer(q in -5i64..1005) {
            let parsed = parse_place_order(&body(&format!(r#"[{{"sku":"A","quantity":{q}.0}}]"#)));
            prop_assert_eq!(parsed.is_ok(), (1..=MAX_QUANTITY).contains(&q));
        }

        #[test]
        fn accepted_quantities_are_exactly_the_valid_range(q in any::<i64>()) {
            let parsed = parse_place_order(&body(&format!(r#"[{{"sku":"A","quantity":{q}}}]"#)));
            prop_assert_eq!(parsed.is_ok(), (1..=MAX_QUANTITY).contains(&q));
        }
    }
}
