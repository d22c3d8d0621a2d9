//! The rules of an order's lines, in one place: the orders API applies them to a
//! request (reporting each broken rule by field) and the command decoder to a Reserve
//! or Release (refusing the message), so a command can never carry lines the API would
//! not have accepted.

use std::collections::BTreeSet;

/// Most lines one order may have.
pub const MAX_LINES: usize = 50;
/// Largest quantity of one line.
pub const MAX_QUANTITY: i64 = 1000;
/// Longest SKU.
pub const MAX_SKU_LEN: usize = 64;

/// A broken rule, with the index of the line it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineViolation {
    /// Fewer than 1 or more than [`MAX_LINES`] lines.
    Count(usize),
    /// The SKU is not 1–[`MAX_SKU_LEN`] letters, digits, `-`, `_` or `.`.
    Sku(usize),
    /// The SKU appears on an earlier line.
    Duplicate(usize),
    /// The quantity is not 1–[`MAX_QUANTITY`].
    Quantity(usize),
}

/// Letters, digits, `-`, `_` and `.`, 1 to `max` of them: what ids and tokens may hold.
pub fn is_identifier(raw: &str, max: usize) -> bool {
    (1..=max).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Every broken rule of `lines` (SKU and quantity of each), in line order.
pub fn violations<'a>(lines: impl ExactSizeIterator<Item = (&'a str, i64)>) -> Vec<LineViolation> {
    let mut found = Vec::new();
    if lines.len() == 0 || lines.len() > MAX_LINES {
        found.push(LineViolation::Count(lines.len()));
    }
    let mut seen = BTreeSet::new();
    for (i, (sku, quantity)) in lines.enumerate() {
        if !is_identifier(sku, MAX_SKU_LEN) {
            found.push(LineViolation::Sku(i));
        } else if !seen.insert(sku) {
            found.push(LineViolation::Duplicate(i));
        }
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            found.push(LineViolation::Quantity(i));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_is_reported_with_its_line() {
        let ok = [("MUG", 1), ("TEE", 1000)];
        assert!(violations(ok.into_iter()).is_empty());
        let bad = [("MUG", 0), ("bad sku", 1), ("MUG", 2)];
        assert_eq!(
            violations(bad.into_iter()),
            [
                LineViolation::Quantity(0),
                LineViolation::Sku(1),
                LineViolation::Duplicate(2)
            ]
        );
        assert_eq!(
            violations(std::iter::empty::<(&str, i64)>()),
            [LineViolation::Count(0)]
        );
        let skus: Vec<String> = (0..=MAX_LINES).map(|i| format!("S{i}")).collect();
        let lines = |n: usize| skus[..n].iter().map(|s| (s.as_str(), 1_i64));
        assert!(violations(lines(MAX_LINES)).is_empty());
        assert_eq!(
            violations(lines(MAX_LINES + 1)),
            [LineViolation::Count(MAX_LINES + 1)]
        );
    }
}
