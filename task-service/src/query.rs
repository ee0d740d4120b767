//! What a `ListTasks` request asks for: its filter (AIP-160), its order (AIP-132) and its page
//! token (AIP-158), parsed into checked values.
//!
//! Page tokens are opaque to clients: base64url JSON holding the last task's sort key and id,
//! and a fingerprint of the owner, filter and order they were issued for. A token used with
//! other values is refused. A token carries no authority: every query filters on the caller.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{Cursor, CursorKey, Order, SortKey};

/// Page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Largest page; larger requests are served this many.
pub const MAX_PAGE_SIZE: i64 = 100;

/// The page size to serve for a requested one, or why it is refused.
pub fn page_size(requested: i32) -> Result<i64, &'static str> {
    match requested {
        ..0 => Err("must not be negative"),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok(i64::from(n).min(MAX_PAGE_SIZE)),
    }
}

/// Parses a filter: empty, `completed = true` or `completed = false` (spaces optional).
/// Returns the state to keep, if any.
pub fn parse_filter(filter: &str) -> Result<Option<bool>, &'static str> {
    let compact: String = filter.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.as_str() {
        "" => Ok(None),
        "completed=true" => Ok(Some(true)),
        "completed=false" => Ok(Some(false)),
        _ => Err("supported filters: `completed = true`, `completed = false`"),
    }
}

/// Parses an order: empty (`create_time desc`), or `create_time`, `update_time` or `title`,
/// each optionally followed by `asc` or `desc` (ascending when not said, as in AIP-132).
pub fn parse_order(order_by: &str) -> Result<Order, &'static str> {
    const SUPPORTED: &str = "supported orders: `create_time desc` (the default), `create_time`, \
        `update_time desc`, `update_time`, `title`, `title desc`";
    let words: Vec<&str> = order_by.split_whitespace().collect();
    let (field, direction) = match words.as_slice() {
        [] => {
            return Ok(Order {
                key: SortKey::CreateTime,
                descending: true,
            });
        }
        [field] => (*field, "asc"),
        [field, direction] => (*field, *direction),
        _ => return Err(SUPPORTED),
    };
    let key = match field {
        "create_time" => SortKey::CreateTime,
        "update_time" => SortKey::UpdateTime,
        "title" => SortKey::Title,
        _ => return Err(SUPPORTED),
    };
    let descending = match direction.to_ascii_lowercase().as_str() {
        "asc" => false,
        "desc" => true,
        _ => return Err(SUPPORTED),
    };
    Ok(Order { key, descending })
}

/// A fingerprint of the listing a token belongs to.
pub fn fingerprint(owner: &str, completed: Option<bool>, order: Order) -> String {
    let filter = match completed {
        None => "",
        Some(true) => "completed=true",
        Some(false) => "completed=false",
    };
    let digest = Sha256::digest(format!("{owner}\0{filter}\0{order:?}").as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize, Deserialize)]
struct TokenBody {
    /// Fingerprint of owner, filter and order.
    f: String,
    /// Time key, for time orders.
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<i64>,
    /// Text key, for the title order.
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    /// Task id.
    i: String,
}

/// The token for the page after `cursor` in the listing with `fingerprint`.
pub fn encode_token(fingerprint: &str, cursor: &Cursor) -> String {
    let (t, s) = match &cursor.key {
        CursorKey::Time(time) => (Some(*time), None),
        CursorKey::Text(text) => (None, Some(text.clone())),
    };
    let body = TokenBody {
        f: fingerprint.to_owned(),
        t,
        s,
        i: cursor.id.clone(),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap_or_default())
}

/// Longest page token accepted.
const MAX_TOKEN_CHARS: usize = 2048;

/// The cursor a token stands for, checked against the listing it is used with.
pub fn decode_token(token: &str, fingerprint: &str, order: Order) -> Result<Cursor, &'static str> {
    const MALFORMED: &str = "is not a token from a previous page";
    if token.len() > MAX_TOKEN_CHARS {
        return Err(MALFORMED);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| MALFORMED)?;
    let body: TokenBody = serde_json::from_slice(&bytes).map_err(|_| MALFORMED)?;
    if body.f != fingerprint {
        return Err("was issued for other parent, filter or order_by values");
    }
    let key = match (order.key, body.t, body.s) {
        (SortKey::CreateTime | SortKey::UpdateTime, Some(time), None) => CursorKey::Time(time),
        (SortKey::Title, None, Some(text)) => CursorKey::Text(text),
        _ => return Err(MALFORMED),
    };
    Ok(Cursor { key, id: body.i })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_follow_aip_158() {
        assert_eq!(page_size(0), Ok(50));
        assert_eq!(page_size(1), Ok(1));
        assert_eq!(page_size(100), Ok(100));
        assert_eq!(page_size(101), Ok(100));
        assert_eq!(page_size(i32::MAX), Ok(100));
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn filters() {
        assert_eq!(parse_filter(""), Ok(None));
        assert_eq!(parse_filter("   "), Ok(None));
        assert_eq!(parse_filter("completed = true"), Ok(Some(true)));
        assert_eq!(parse_filter("completed=false"), Ok(Some(false)));
        assert_eq!(parse_filter(" completed =  true "), Ok(Some(true)));
        for bad in [
            "completed = yes",
            "title = x",
            "completed",
            "completed = true OR x",
            "DROP TABLE",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn orders() {
        let order = |key, descending| Ok(Order { key, descending });
        assert_eq!(parse_order(""), order(SortKey::CreateTime, true));
        assert_eq!(
            parse_order("create_time desc"),
            order(SortKey::CreateTime, true)
        );
        assert_eq!(
            parse_order("create_time"),
            order(SortKey::CreateTime, false)
        );
        assert_eq!(
            parse_order("update_time desc"),
            order(SortKey::UpdateTime, true)
        );
        assert_eq!(parse_order(" title "), order(SortKey::Title, false));
        assert_eq!(parse_order("title DESC"), order(SortKey::Title, true));
        for bad in [
            "priority",
            "title sideways",
            "create_time desc, title",
            "create_time desc x",
        ] {
            assert!(parse_order(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_listing() {
        let order = Order {
            key: SortKey::CreateTime,
            descending: true,
        };
        let print = fingerprint("u1", None, order);
        let cursor = Cursor {
            key: CursorKey::Time(1_700_000_000_000_000),
            id: "t1".into(),
        };
        let token = encode_token(&print, &cursor);
        assert_eq!(decode_token(&token, &print, order), Ok(cursor));

        for other in [
            fingerprint("u2", None, order),
            fingerprint("u1", Some(true), order),
            fingerprint(
                "u1",
                None,
                Order {
                    key: SortKey::CreateTime,
                    descending: false,
                },
            ),
        ] {
            assert_ne!(other, print);
            assert!(decode_token(&token, &other, order).is_err());
        }

        let title_order = Order {
            key: SortKey::Title,
            descending: false,
        };
        let title_print = fingerprint("u1", None, title_order);
        let title_cursor = Cursor {
            key: CursorKey::Text("Buy milk 🥛".into()),
            id: "t2".into(),
        };
        let token = encode_token(&title_print, &title_cursor);
        assert_eq!(
            decode_token(&token, &title_print, title_order),
            Ok(title_cursor)
        );
    }

    #[test]
    fn garbage_tokens_are_refused() {
        let order = Order {
            key: SortKey::CreateTime,
            descending: true,
        };
        let print = fingerprint("u1", None, order);
        for bad in ["", "!!!", "bm90IGpzb24", &"A".repeat(5000)] {
            assert!(decode_token(bad, &print, order).is_err(), "{bad:.20}");
        }
    }
}
