//! Strong entity tags for XCAP documents (RFC 4825 §7.11, §8.5) and the `If-Match` /
//! `If-None-Match` evaluation (RFC 9110 §13.1).
//!
//! An ETag is `<version hex>-<content hash hex>`: the per-document version counter (kept by the
//! store) makes a tag unique even when a document returns to an earlier content, and the hash
//! makes two stores that disagree about the bytes disagree about the tag. It is opaque to
//! clients and quoted on the wire.
#![forbid(unsafe_code)]

use super::error::XcapError;

/// Longest entity tag we accept from a peer (a bound on input).
const MAX_TAG_LEN: usize = 256;
/// Most entity tags in one `If-Match` / `If-None-Match` list.
const MAX_TAGS: usize = 64;

/// A strong entity tag, stored without quotes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ETag(String);

impl ETag {
    /// The tag of a document with this content at this version.
    pub fn for_document(content: &[u8], version: u64) -> ETag {
        ETag(format!("{version:x}-{:016x}", fnv1a64(content)))
    }

    /// Wraps an opaque tag (unquoted). Returns `None` for a tag that could not be put on the
    /// wire (empty, too long, or containing `"`, control characters or spaces).
    pub fn from_opaque(tag: &str) -> Option<ETag> {
        let ok = !tag.is_empty()
            && tag.len() <= MAX_TAG_LEN
            && tag.bytes().all(|b| b > 0x20 && b != b'"' && b != 0x7f);
        ok.then(|| ETag(tag.to_owned()))
    }

    /// Parses one quoted strong tag from a header (`"abc"`). Weak tags are refused.
    pub fn parse_header(value: &str) -> Option<ETag> {
        let inner = value.trim().strip_prefix('"')?.strip_suffix('"')?;
        ETag::from_opaque(inner)
    }

    /// The tag without quotes (as used in xcap-diff `new-etag` / `previous-etag`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag as an `ETag` header value, quoted.
    pub fn to_header(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl std::fmt::Display for ETag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// FNV-1a, 64 bit: small, dependency-free, deterministic across runs and machines.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// One element of an `If-Match` / `If-None-Match` list.
#[derive(Debug, PartialEq, Eq)]
enum ListItem<'a> {
    Star,
    Tag { weak: bool, opaque: &'a str },
}

/// Parses `*` or a comma-separated list of (possibly weak) quoted tags. `None` when the header
/// does not parse; the caller treats that as a failed condition, never as a match.
fn parse_list(value: &str) -> Option<Vec<ListItem<'_>>> {
    let value = value.trim();
    if value == "*" {
        return Some(vec![ListItem::Star]);
    }
    let mut items = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        if items.len() >= MAX_TAGS {
            return None;
        }
        let (weak, after) = match rest.strip_prefix("W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let after = after.strip_prefix('"')?;
        let end = after.find('"')?;
        let opaque = &after[..end];
        if opaque.len() > MAX_TAG_LEN {
            return None;
        }
        items.push(ListItem::Tag { weak, opaque });
        rest = &after[end + 1..];
        let trimmed = rest.trim_start_matches([' ', '\t']);
        if !(trimmed.is_empty() || trimmed.starts_with(',')) {
            return None;
        }
    }
    if items.is_empty() { None } else { Some(items) }
}

/// `If-Match`: true when the condition holds. Strong comparison (RFC 9110 §13.1.1): a weak tag
/// never matches, `*` matches any existing document.
fn if_match_holds(header: &str, current: Option<&ETag>) -> bool {
    let Some(items) = parse_list(header) else {
        return false;
    };
    let Some(current) = current else {
        return false;
    };
    items.iter().any(|i| match i {
        ListItem::Star => true,
        ListItem::Tag { weak, opaque } => !weak && *opaque == current.as_str(),
    })
}

/// `If-None-Match`: true when the condition holds. Weak comparison (RFC 9110 §13.1.2); `*`
/// fails when the document exists.
fn if_none_match_holds(header: &str, current: Option<&ETag>) -> bool {
    let Some(items) = parse_list(header) else {
        return false;
    };
    let Some(current) = current else {
        return true;
    };
    !items.iter().any(|i| match i {
        ListItem::Star => true,
        ListItem::Tag { opaque, .. } => *opaque == current.as_str(),
    })
}

/// Preconditions of a PUT or DELETE (RFC 4825 §7.11 and RFC 9110 §13.2.2): any failure is 412.
/// `current` is the document's tag, `None` when the document does not exist.
pub fn check_preconditions(
    if_match: Option<&str>,
    if_none_match: Option<&str>,
    current: Option<&ETag>,
) -> Result<(), XcapError> {
    if let Some(h) = if_match
        && !if_match_holds(h, current)
    {
        return Err(XcapError::PreconditionFailed);
    }
    if let Some(h) = if_none_match
        && !if_none_match_holds(h, current)
    {
        return Err(XcapError::PreconditionFailed);
    }
    Ok(())
}

/// Preconditions of a GET (or HEAD): a failed `If-Match` is 412, a failed `If-None-Match` is
/// 304 Not Modified (RFC 9110 §13.1.2).
pub fn check_read_preconditions(
    if_match: Option<&str>,
    if_none_match: Option<&str>,
    current: Option<&ETag>,
) -> Result<(), XcapError> {
    if let Some(h) = if_match
        && !if_match_holds(h, current)
    {
        return Err(XcapError::PreconditionFailed);
    }
    if let Some(h) = if_none_match
        && !if_none_match_holds(h, current)
    {
        return Err(XcapError::NotModified);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(s: &str) -> ETag {
        ETag::from_opaque(s).expect("valid tag")
    }

    #[test]
    fn tags_differ_by_content_and_version() {
        let a = ETag::for_document(b"<a/>", 1);
        assert_ne!(a, ETag::for_document(b"<b/>", 1));
        assert_ne!(a, ETag::for_document(b"<a/>", 2));
        assert_eq!(a, ETag::for_document(b"<a/>", 1));
        assert!(a.to_header().starts_with('"') && a.to_header().ends_with('"'));
        assert_eq!(ETag::parse_header(&a.to_header()), Some(a));
        assert_eq!(ETag::parse_header("W/\"x\""), None);
        assert_eq!(ETag::from_opaque("a\"b"), None);
        assert_eq!(ETag::from_opaque(""), None);
    }

    /// (if-match, if-none-match, current tag, expected ok)
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a ETag>, bool);

    #[test]
    fn precondition_table() {
        let e41 = tag("e41");
        let some = Some(&e41);
        // (if-match, if-none-match, current, expected ok)
        let cases: &[Case<'_>] = &[
            (None, None, some, true),
            (None, None, None, true),
            (Some("\"e41\""), None, some, true),
            (Some("\"e40\""), None, some, false),
            (Some("\"e40\", \"e41\""), None, some, true),
            (Some("W/\"e41\""), None, some, false),
            (Some("*"), None, some, true),
            (Some("*"), None, None, false),
            (Some("\"e41\""), None, None, false),
            (None, Some("*"), some, false),
            (None, Some("*"), None, true),
            (None, Some("\"e41\""), some, false),
            (None, Some("W/\"e41\""), some, false),
            (None, Some("\"e40\""), some, true),
            (Some("garbage"), None, some, false),
            (None, Some("\"unterminated"), some, false),
            (Some("\"e41\" junk"), None, some, false),
        ];
        for (im, inm, cur, ok) in cases {
            let got = check_preconditions(*im, *inm, *cur);
            assert_eq!(got.is_ok(), *ok, "{im:?} {inm:?} {cur:?}");
            if let Err(e) = got {
                assert_eq!(e, XcapError::PreconditionFailed);
            }
        }
    }

    #[test]
    fn read_preconditions_give_304() {
        let e = tag("e41");
        assert_eq!(
            check_read_preconditions(None, Some("\"e41\""), Some(&e)),
            Err(XcapError::NotModified)
        );
        assert_eq!(
            check_read_preconditions(Some("\"x\""), None, Some(&e)),
            Err(XcapError::PreconditionFailed)
        );
        assert_eq!(
            check_read_preconditions(None, Some("\"x\""), Some(&e)),
            Ok(())
        );
    }

    #[test]
    fn list_is_bounded() {
        let long = (0..100)
            .map(|i| format!("\"t{i}\""))
            .collect::<Vec<_>>()
            .join(",");
        let e = tag("t1");
        assert!(check_preconditions(Some(&long), None, Some(&e)).is_err());
    }
}
