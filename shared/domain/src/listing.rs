//! A shopper's own orders, newest first, a page at a time (`GET /v1/orders`).
//!
//! The cursor a client gets back is opaque to it: base64url of the position of the last
//! order on the page. It never carries the owner; the store always queries the
//! caller's own orders, so a cursor edited by hand can at worst move the caller within
//! their own list, and one that does not decode is refused.

use crate::order::{Order, OrderId};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Orders on a page when the client does not say.
pub const DEFAULT_LIMIT: usize = 20;
/// Most orders on one page.
pub const MAX_LIMIT: usize = 100;
/// Longest cursor accepted; a real one is well under this.
const MAX_CURSOR_LEN: usize = 512;

/// Where the next page starts: just after this order in newest-first order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCursor {
    /// `createdAt` of the last order shown.
    #[serde(rename = "c")]
    pub created_at: String,
    /// Its id, which breaks ties between orders created in the same instant.
    #[serde(rename = "o")]
    pub order_id: OrderId,
}

impl ListCursor {
    /// The cursor right after `order`.
    pub fn after(order: &Order) -> Self {
        Self {
            created_at: order.created_at.clone(),
            order_id: order.order_id.clone(),
        }
    }

    /// The opaque text handed to clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a cursor a client sent back; `None` for anything this API did not issue.
    pub fn decode(raw: &str) -> Option<Self> {
        if raw.is_empty() || raw.len() > MAX_CURSOR_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let cursor: Self = serde_json::from_slice(&bytes).ok()?;
        let timestamp_ok = crate::normalize_timestamp(&cursor.created_at).is_some();
        let id_ok = OrderId::parse(cursor.order_id.as_str()).is_some();
        (timestamp_ok && id_ok).then_some(cursor)
    }
}

/// Which page of a shopper's orders to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many orders, 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// Start after this position; `None` for the newest orders.
    pub after: Option<ListCursor>,
}

/// One page of orders, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    /// The orders.
    pub orders: Vec<Order>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ListCursor>,
}

/// Why a listing query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageRequestError {
    /// `limit` is not an integer from 1 to [`MAX_LIMIT`].
    #[error("limit must be an integer from 1 to {MAX_LIMIT}")]
    Limit,
    /// `cursor` was not issued by this API (edited, truncated or from elsewhere).
    #[error("cursor is not one this API issued; start again without it")]
    Cursor,
}

impl PageRequest {
    /// Reads `limit` and `cursor` as the client sent them.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, PageRequestError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or(PageRequestError::Limit)?,
        };
        let after = cursor
            .map(|raw| ListCursor::decode(raw).ok_or(PageRequestError::Cursor))
            .transpose()?;
        Ok(Self { limit, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cursor() -> ListCursor {
        ListCursor {
            created_at: "2026-11-29T04:12:49.094678914Z".into(),
            order_id: OrderId::parse("ord-0193abc").unwrap(),
        }
    }

    #[test]
    fn a_cursor_survives_the_round_trip() {
        let c = cursor();
        assert_eq!(ListCursor::decode(&c.encode()), Some(c));
    }

    #[test]
    fn limits_default_to_20_and_stay_within_1_to_100() {
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(PageRequest::parse(Some("100"), None).unwrap().limit, 100);
        for bad in ["0", "101", "-1", "ten", "", "1.5", "5,6"] {
            assert_eq!(
                PageRequest::parse(Some(bad), None),
                Err(PageRequestError::Limit),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_tampered_cursor_is_refused() {
        let good = cursor().encode();
        let mut flipped = good.clone().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let forged_id = URL_SAFE_NO_PAD.encode(br#"{"c":"2026-11-29T04:12:49Z","o":"x' OR 1=1"}"#);
        let forged_time = URL_SAFE_NO_PAD.encode(br#"{"c":"yesterday","o":"ord-1"}"#);
        for bad in [
            String::from_utf8(flipped).unwrap(),
            forged_id,
            forged_time,
            format!("{good}=="),
            "%%%".into(),
        ] {
            assert_eq!(
                PageRequest::parse(None, Some(&bad)),
                Err(PageRequestError::Cursor),
                "{bad}"
            );
        }
    }

    /// A valid cursor whose JSON is padded with whitespace to `len` characters.
    fn padded(len: usize) -> String {
        let json = serde_json::to_string(&cursor()).unwrap();
        (0..)
            .map(|pad| URL_SAFE_NO_PAD.encode(format!("{json}{}", " ".repeat(pad))))
            .find(|c| c.len() >= len)
            .unwrap()
    }

    #[test]
    fn a_cursor_is_at_most_512_characters() {
        let longest = padded(MAX_CURSOR_LEN);
        assert_eq!(longest.len(), MAX_CURSOR_LEN);
        assert_eq!(ListCursor::decode(&longest), Some(cursor()));
        let longer = padded(MAX_CURSOR_LEN + 1);
        assert!(longer.len() > MAX_CURSOR_LEN);
        assert_eq!(ListCursor::decode(&longer), None);
        assert_eq!(ListCursor::decode(""), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_queries(limit in ".{0,12}", cursor in ".{0,600}") {
            let _ = PageRequest::parse(Some(&limit), Some(&cursor));
        }
    }
}
