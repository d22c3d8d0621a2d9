//! `--filter` expressions: select dead letters by a field of their JSON body or by a
//! message attribute, e.g. `detail.orderId=ord-…`, `command=Charge`,
//! `attr.ERROR_CODE~Throttl`, `failure.Error` (present).

use super::OpsError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::str::FromStr;

/// Where a filter looks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A dotted path into the JSON body; numeric segments index arrays.
    Body(Vec<String>),
    /// A message attribute or SQS system attribute (`attr.NAME`).
    Attribute(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Present,
    Equals(String),
    NotEquals(String),
    Contains(String),
}

/// A parsed filter: `PATH`, `PATH=VALUE`, `PATH!=VALUE` or `PATH~TEXT` (contains).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    expr: String,
    target: Target,
    op: Op,
}

impl FromStr for Filter {
    type Err = OpsError;

    fn from_str(expr: &str) -> Result<Self, OpsError> {
        let bad = |reason: &str| OpsError::Filter {
            expr: expr.to_owned(),
            reason: reason.to_owned(),
        };
        let (path, op) = if let Some((p, v)) = expr.split_once("!=") {
            (p, Op::NotEquals(v.to_owned()))
        } else if let Some((p, v)) = expr.split_once('=') {
            (p, Op::Equals(v.to_owned()))
        } else if let Some((p, v)) = expr.split_once('~') {
            (p, Op::Contains(v.to_owned()))
        } else {
            (expr, Op::Present)
        };
        let path = path.trim();
        if path.is_empty() {
            return Err(bad(
                "no path before the operator; write PATH, PATH=VALUE, PATH!=VALUE or PATH~TEXT",
            ));
        }
        if path.chars().any(char::is_whitespace) {
            return Err(bad("a path has no spaces"));
        }
        let target = match path.strip_prefix("attr.") {
            Some("") => return Err(bad("attr. needs an attribute name")),
            Some(name) => Target::Attribute(name.to_owned()),
            None => {
                let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
                if segments.iter().any(String::is_empty) {
                    return Err(bad(
                        "empty segment in the path (two dots, or a leading or trailing dot)",
                    ));
                }
                Target::Body(segments)
            }
        };
        Ok(Self {
            expr: expr.to_owned(),
            target,
            op,
        })
    }
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Filter {
    /// Whether a message matches. A body that is not JSON never matches a body path.
    pub fn matches(&self, body: Option<&Value>, attributes: &BTreeMap<String, String>) -> bool {
        let found = match &self.target {
            Target::Attribute(name) => attributes.get(name).cloned(),
            Target::Body(segments) => body
                .and_then(|b| {
                    segments.iter().try_fold(b, |v, s| match v {
                        Value::Array(items) => items.get(s.parse::<usize>().ok()?),
                        _ => v.get(s),
                    })
                })
                .map(as_text),
        };
        match (&self.op, found) {
            (Op::Present, found) => found.is_some(),
            (Op::Equals(want), Some(got)) => &got == want,
            (Op::NotEquals(want), Some(got)) => &got != want,
            (Op::NotEquals(_), None) => true,
            (Op::Contains(part), Some(got)) => got.contains(part.as_str()),
            (_, None) => false,
        }
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn body_paths_select_by_value_presence_and_substring() {
        let body =
            json!({"detail": {"orderId": "ord-1", "total": 4499}, "lines": [{"sku": "MUG"}]});
        let m = |e: &str| {
            e.parse::<Filter>()
                .unwrap()
                .matches(Some(&body), &attrs(&[]))
        };
        assert!(m("detail.orderId=ord-1"));
        assert!(!m("detail.orderId=ord-2"));
        assert!(m("detail.orderId!=ord-2"));
        assert!(m("detail.total=4499"));
        assert!(m("lines.0.sku=MUG"));
        assert!(!m("lines.1.sku=MUG"));
        assert!(m("detail.orderId~ord"));
        assert!(m("detail"));
        assert!(!m("failure"));
        assert!(m("failure!=x"), "absent is not equal");
    }

    #[test]
    fn attributes_are_matched_by_name() {
        let a = attrs(&[("ERROR_CODE", "SQS_THROTTLED")]);
        let f: Filter = "attr.ERROR_CODE~THROTTLED".parse().unwrap();
        assert!(f.matches(None, &a));
        assert!(!f.matches(None, &attrs(&[])));
    }

    #[test]
    fn a_body_that_is_not_json_matches_no_body_path() {
        let f: Filter = "orderId".parse().unwrap();
        assert!(!f.matches(None, &attrs(&[])));
    }

    #[test]
    fn malformed_expressions_are_refused_with_the_reason() {
        for bad in [
            "", "=x", "a..b=1", ".a", "a.=1", "attr.=x", "attr.", "a b=1",
        ] {
            let err = bad.parse::<Filter>().unwrap_err();
            assert!(
                matches!(&err, OpsError::Filter { expr, .. } if expr == bad),
                "{bad:?}: {err}"
            );
        }
    }
}
