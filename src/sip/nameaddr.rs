//! name-addr / addr-spec with header parameters (RFC 3261 §20.10, §25.1): the shape of From, To,
//! Contact, Route, Record-Route, P-Asserted-Identity and friends.
//!
//! `"Display" <uri>;params`, `Display Tokens <uri>;params` and `uri;params`. In the last form the
//! parameters belong to the header, not the URI, so a URI with `;`, `?` or `,` of its own must be
//! bracketed (§20.10); an unbracketed `?` is rejected (RFC 4475 regbadct).
#![forbid(unsafe_code)]

use super::error::SyntaxError;
use super::hdr::HeaderName;
use super::lex::{is_token_char, is_ws, quoted_end, trim};
use super::params::{self, Params};
use super::scan::{Span, View, span_in};
use super::uri::{self, Scheme, Uri};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written: a quoted string with its quotes, or a run of tokens.
    pub display: Option<&'a [u8]>,
    /// The URI text (without angle brackets).
    pub uri: &'a [u8],
    pub bracketed: bool,
    /// Header parameters (`tag`, `expires`, `q`...).
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.params.tag()
    }

    /// The parsed URI (already validated by [`parse`], so this only fails on a logic error).
    pub fn parsed_uri(&self) -> Result<Uri<'a>, SyntaxError> {
        uri::parse(self.uri)
    }
}

/// Parses one name-addr or addr-spec (one element of a comma list, or a whole From/To value).
pub fn parse(v: &[u8]) -> Result<NameAddr<'_>, SyntaxError> {
    parse_with_uri(v).map(|(n, _)| n)
}

/// A parsed From or To value as offsets into the message, with its URI scheme and tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NaSpans {
    display: Option<Span>,
    uri: Span,
    bracketed: bool,
    params: Span,
    tag: Option<Span>,
    scheme: Scheme,
}

/// The memoised first From or To: absent, or its parse.
pub(crate) type NaMemo = Option<Result<NaSpans, SyntaxError>>;

/// A name-addr header value with the facts validation and the writers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddrFacts<'a> {
    pub name_addr: NameAddr<'a>,
    /// The URI's scheme (the URI was parsed while validating the name-addr).
    pub scheme: Scheme,
    /// As [`NameAddr::tag`].
    pub tag: Option<&'a [u8]>,
}

/// The first From or To value of `view`, parsed once per scanned message: `None` when the
/// header is absent. Other headers are parsed on every call.
pub fn header_facts<'a>(
    view: &View<'a>,
    h: HeaderName,
) -> Option<Result<NameAddrFacts<'a>, SyntaxError>> {
    let buf = view.buf();
    let Some(memo) = memo(view, h) else {
        return view.header(h).map(|x| {
            parse_facts(x).map(|(n, u, tag)| NameAddrFacts {
                name_addr: n,
                scheme: u.scheme,
                tag,
            })
        });
    };
    memo.as_ref().map(|r| {
        r.as_ref()
            .map(|s| NameAddrFacts {
                name_addr: NameAddr {
                    display: s.display.map(|d| d.slice(buf)),
                    uri: s.uri.slice(buf),
                    bracketed: s.bracketed,
                    params: Params::validated(s.params.slice(buf)),
                },
                scheme: s.scheme,
                tag: s.tag.map(|t| t.slice(buf)),
            })
            .map_err(|e| *e)
    })
}

/// The memoised parse of the first From or To value (parsed here on first use); `None` for
/// other headers, which are not memoised.
fn memo<'a>(view: &View<'a>, h: HeaderName) -> Option<&'a NaMemo> {
    let cell = match h {
        HeaderName::From => &view.memos().from,
        HeaderName::To => &view.memos().to,
        _ => return None,
    };
    Some(cell.get_or_init(|| {
        let buf = view.buf();
        view.header(h).map(|x| {
            parse_facts(x).map(|(n, u, tag)| NaSpans {
                display: n.display.map(|d| span_in(buf, d)),
                uri: span_in(buf, n.uri),
                bracketed: n.bracketed,
                params: span_in(buf, n.params.as_bytes()),
                tag: tag.map(|t| span_in(buf, t)),
                scheme: u.scheme,
            })
        })
    }))
}

/// The `tag` of the first From or To value, as [`header_facts`] gives it, for a header that
/// is present and parses (`Some(None)`: no tag); `None` when it is absent or does not parse.
/// Reads the memo in place.
pub fn header_tag<'a>(view: &View<'a>, h: HeaderName) -> Option<Option<&'a [u8]>> {
    match memo(view, h) {
        Some(m) => m
            .as_ref()?
            .as_ref()
            .ok()
            .map(|s| s.tag.map(|t| t.slice(view.buf()))),
        None => header_facts(view, h).and_then(Result::ok).map(|n| n.tag),
    }
}

/// [`parse`], also returning the parsed URI (callers that need its parts need not parse it
/// again).
pub fn parse_with_uri(v: &[u8]) -> Result<(NameAddr<'_>, Uri<'_>), SyntaxError> {
    parse_facts(v).map(|(n, u, _)| (n, u))
}

/// The header parameters after the URI, with the `tag` (as [`Params::tag`]) read while they
/// are validated: one pass instead of a second walk to find it.
fn header_params(rest: &[u8]) -> Result<(Params<'_>, Option<&[u8]>), SyntaxError> {
    let mut tag = None;
    let (params, used) = params::parse_visit(rest, |p| {
        if tag.is_none() && p.name.eq_ignore_ascii_case(b"tag") {
            tag = Some(p.text());
        }
    })?;
    if used != rest.len() {
        return Err(SyntaxError::Param);
    }
    Ok((params, tag.flatten()))
}

/// [`parse_with_uri`] plus the tag parameter.
#[allow(clippy::type_complexity)]
fn parse_facts(v: &[u8]) -> Result<(NameAddr<'_>, Uri<'_>, Option<&[u8]>), SyntaxError> {
    let s = trim(v);
    if s.is_empty() {
        return Err(SyntaxError::Empty);
    }
    // Find where a bracketed URI would start: after a quoted display name, or after a run of
    // tokens and whitespace (RFC 4475 lwsdisp: no space is needed before '<').
    let mut display = None;
    let mut lt = None;
    if s[0] == b'"' {
        let q = quoted_end(s, 0)?;
        display = Some(&s[..q]);
        let mut i = q;
        while i < s.len() && is_ws(s[i]) {
            i += 1;
        }
        if s.get(i) != Some(&b'<') {
            return Err(SyntaxError::Angle);
        }
        lt = Some(i);
    } else {
        let mut i = 0;
        while i < s.len() && (is_token_char(s[i]) || is_ws(s[i])) {
            i += 1;
        }
        if s.get(i) == Some(&b'<') {
            let d = trim(&s[..i]);
            display = (!d.is_empty()).then_some(d);
            lt = Some(i);
        }
    }
    if let Some(lt) = lt {
        let gt = memchr::memchr(b'>', &s[lt..]).ok_or(SyntaxError::Angle)? + lt;
        let u = &s[lt + 1..gt];
        // No LWS inside the brackets (RFC 4475 badaspec); uri::parse rejects it.
        let parsed = uri::parse(u)?;
        let (params, tag) = header_params(&s[gt + 1..])?;
        return Ok((
            NameAddr {
                display,
                uri: u,
                bracketed: true,
                params,
            },
            parsed,
            tag,
        ));
    }
    // addr-spec: the URI ends at the first ';' or whitespace.
    let end = s
        .iter()
        .position(|&b| b == b';' || is_ws(b))
        .unwrap_or(s.len());
    let u = &s[..end];
    if u.contains(&b'?') || u.contains(&b',') {
        return Err(SyntaxError::Uri);
    }
    let parsed = uri::parse(u)?;
    let (params, tag) = header_params(&s[end..])?;
    Ok((
        NameAddr {
            display: None,
            uri: u,
            bracketed: false,
            params,
        },
        parsed,
        tag,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tag read while validating is the one `Params::tag` finds afterwards: the first
    /// `tag` parameter (any case), unquoted, `None` when that one has no value.
    #[test]
    fn facts_tag_is_params_tag() {
        use crate::sip::scan::Parsed;
        for params in [
            "",
            ";tag=a1",
            ";TAG=a1;tag=b2",
            ";x=1 ; Tag = \"q\\\"t\" ;y",
            ";tag;tag=late",
            ";tags=no;tag=yes",
            ";expires=3",
        ] {
            for value in [
                format!("<sip:a@example.com>{params}"),
                format!("\"A\" <sip:a@example.com;lr>{params}"),
                format!("sip:a@example.com{params}"),
            ] {
                let m = format!(
                    "MESSAGE sip:b@example.com SIP/2.0\r\nFrom: {value}\r\nP-Asserted-Identity: {value}\r\n\r\n"
                );
                let mut p = Parsed::new();
                p.scan_datagram(m.as_bytes()).unwrap();
                let view = p.view(m.as_bytes());
                for h in [HeaderName::From, HeaderName::PAssertedIdentity] {
                    // Asked before and after the memo is filled: the same tag either way.
                    let early = header_tag(&view, h);
                    let facts = header_facts(&view, h).unwrap().unwrap();
                    let want = parse(value.as_bytes()).unwrap().params.tag();
                    assert_eq!(facts.tag, want, "{value}");
                    assert_eq!(facts.name_addr.tag(), want, "{value}");
                    assert_eq!(early, Some(want), "{value}");
                    assert_eq!(header_tag(&view, h), Some(want), "{value}");
                }
            }
        }
    }

    /// `header_tag` is `None` for an absent header and for one that does not parse, like
    /// `header_facts`, memoised (From, To) or not.
    #[test]
    fn tag_of_absent_or_bad_header_is_none() {
        use crate::sip::scan::Parsed;
        let m = "MESSAGE sip:b@example.com SIP/2.0\r\nTo: \"open <sip:b@example.com>\r\nP-Asserted-Identity: <sip:a@x\r\n\r\n";
        let mut p = Parsed::new();
        p.scan_datagram(m.as_bytes()).unwrap();
        let view = p.view(m.as_bytes());
        for h in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::PAssertedIdentity,
        ] {
            assert_eq!(header_tag(&view, h), None, "{h:?}");
            assert!(
                header_facts(&view, h).and_then(Result::ok).is_none(),
                "{h:?}"
            );
        }
    }

    #[test]
    fn forms() {
        let n = parse(b"\"A \\\"B\\\"\" <sip:a@b.com;lr>;tag=x").unwrap();
        assert_eq!(n.display, Some(&b"\"A \\\"B\\\"\""[..]));
        assert_eq!(n.uri, b"sip:a@b.com;lr");
        assert_eq!(n.tag(), Some(&b"x"[..]));
        let n = parse(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display, Some(&b"caller"[..]));
        let n = parse(b" sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert!(!n.bracketed);
        assert_eq!(n.uri, b"sip:vivekg@chair-dnrc.example.com");
        assert_eq!(n.tag(), Some(&b"1918181833n"[..]));
        let n = parse(b"token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\xd1\x80\";tag=_token~1'+`*%!-.").unwrap();
        assert_eq!(n.tag(), Some(&b"_token~1'+`*%!-."[..]));
    }

    #[test]
    fn torture_failures() {
        // quotbal, badaspec, baddn, regbadct, badinv01
        assert_eq!(
            parse(b"\"Mr. J. User <sip:j.user@example.com>").unwrap_err(),
            SyntaxError::Quote
        );
        assert!(parse(b"\"Watson, Thomas\" < sip:t.watson@example.org >").is_err());
        assert!(parse(b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(parse(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(parse(b"\"Joe\" <sip:joe@example.org>;;;;").is_err());
        assert!(parse(b"<sip:a@b").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"<sip:a@b> junk").is_err());
    }
}
