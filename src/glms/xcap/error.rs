//! XCAP error conditions (RFC 4825 §11) and their HTTP mapping.
//!
//! Every failure of an XCAP operation is one `XcapError`. The variant knows its HTTP status and,
//! for the 409 family, writes the `application/xcap-error+xml` body (namespace
//! `urn:ietf:params:xml:ns:xcap-error`, RFC 4825 §11.2).
//!
//! Judgment call: the contract asks for `Copy` error enums, but two RFC 4825 conditions carry
//! data that the client needs (`<no-parent><ancestor>` and `<uniqueness-failure><exists>`). Those
//! two variants hold a `Box`, so the enum stays two words and is `Clone`, not `Copy`.
#![forbid(unsafe_code)]

use super::dom::escape_text_into;

/// Namespace of the XCAP error document (RFC 4825 §11.2).
pub const XCAP_ERROR_NS: &str = "urn:ietf:params:xml:ns:xcap-error";
/// MIME type of the XCAP error document (RFC 4825 §15.2.5).
pub const XCAP_ERROR_MIME: &str = "application/xcap-error+xml";

/// The `Allow` header value that goes with a 405.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allow {
    /// Read-only resources (xcap-caps, namespace bindings): `Allow: GET`.
    Get,
    /// Ordinary XCAP resources: `Allow: GET, PUT, DELETE`.
    GetPutDelete,
}

impl Allow {
    /// The header value.
    pub fn header_value(self) -> &'static str {
        match self {
            Allow::Get => "GET",
            Allow::GetPutDelete => "GET, PUT, DELETE",
        }
    }
}

/// One `<exists field="..">` of a uniqueness failure, with suggested alternatives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exists {
    /// Node selector (relative to the document) of the field that is not unique.
    pub field: String,
    /// Values the client could use instead (RFC 4825 §11.2 `<alt-value>`); may be empty.
    pub alt_values: Vec<String>,
}

/// Everything that can go wrong in an XCAP request, by cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XcapError {
    /// 409 `<not-well-formed>`: the body is not well-formed XML.
    #[error("body is not well-formed XML")]
    NotWellFormed,
    /// 409 `<not-xml-frag>`: an element PUT body is not exactly one element.
    #[error("body is not a single XML element")]
    NotXmlFrag,
    /// 409 `<not-xml-att-value>`: an attribute PUT body is not a valid attribute value.
    #[error("body is not a valid XML attribute value")]
    NotXmlAttValue,
    /// 409 `<not-utf-8>`: the body is not UTF-8.
    #[error("body is not UTF-8")]
    NotUtf8,
    /// 409 `<schema-validation-error>`, with a phrase naming the violated rule.
    #[error("schema validation error: {0}")]
    SchemaValidation(&'static str),
    /// 409 `<uniqueness-failure>` with the offending fields.
    #[error("uniqueness constraint violated")]
    UniquenessFailure(Box<[Exists]>),
    /// 409 `<no-parent>`: the parent of the node to create does not exist; the box holds the
    /// URI of the closest ancestor that does.
    #[error("parent does not exist (closest ancestor {0})")]
    NoParent(Box<str>),
    /// 409 `<cannot-insert>`: the PUT would not make the URI select what was put (§8.2.5).
    #[error("cannot insert: the request URI would not select the new node")]
    CannotInsert,
    /// 409 `<cannot-delete>`: after the DELETE the URI would still select something (§8.2.5).
    #[error("cannot delete: the request URI would still select a node")]
    CannotDelete,
    /// 409 `<constraint-failure>`: a usage constraint other than schema or uniqueness, or one
    /// of our resource limits (depth, attributes, children).
    #[error("constraint failure: {0}")]
    ConstraintFailure(&'static str),
    /// 400: the request URI (document or node selector) does not parse.
    #[error("bad request URI: {0}")]
    BadRequest(&'static str),
    /// 404: no such document, element or attribute, or the selector is ambiguous (§8.3).
    #[error("not found")]
    NotFound,
    /// 405 with the given `Allow`.
    #[error("method not allowed")]
    MethodNotAllowed(Allow),
    /// 304: `If-None-Match` matched on a GET.
    #[error("not modified")]
    NotModified,
    /// 412: `If-Match` / `If-None-Match` failed.
    #[error("precondition failed")]
    PreconditionFailed,
    /// 413: the body is larger than the document size limit.
    #[error("document too large")]
    TooLarge,
    /// 415: wrong `Content-Type` for this kind of resource.
    #[error("unsupported media type")]
    UnsupportedMediaType,
}

impl XcapError {
    /// HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            XcapError::NotWellFormed
            | XcapError::NotXmlFrag
            | XcapError::NotXmlAttValue
            | XcapError::NotUtf8
            | XcapError::SchemaValidation(_)
            | XcapError::UniquenessFailure(_)
            | XcapError::NoParent(_)
            | XcapError::CannotInsert
            | XcapError::CannotDelete
            | XcapError::ConstraintFailure(_) => 409,
            XcapError::BadRequest(_) => 400,
            XcapError::NotFound => 404,
            XcapError::MethodNotAllowed(_) => 405,
            XcapError::NotModified => 304,
            XcapError::PreconditionFailed => 412,
            XcapError::TooLarge => 413,
            XcapError::UnsupportedMediaType => 415,
        }
    }

    /// HTTP reason phrase.
    pub fn reason(&self) -> &'static str {
        match self.status() {
            304 => "Not Modified",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            412 => "Precondition Failed",
            413 => "Content Too Large",
            _ => "Unsupported Media Type",
        }
    }

    /// The `Allow` header a 405 must carry.
    pub fn allow(&self) -> Option<Allow> {
        match self {
            XcapError::MethodNotAllowed(a) => Some(*a),
            _ => None,
        }
    }

    /// Element name inside `<xcap-error>` for the 409 family; `None` for other statuses.
    pub fn condition(&self) -> Option<&'static str> {
        Some(match self {
            XcapError::NotWellFormed => "not-well-formed",
            XcapError::NotXmlFrag => "not-xml-frag",
            XcapError::NotXmlAttValue => "not-xml-att-value",
            XcapError::NotUtf8 => "not-utf-8",
            XcapError::SchemaValidation(_) => "schema-validation-error",
            XcapError::UniquenessFailure(_) => "uniqueness-failure",
            XcapError::NoParent(_) => "no-parent",
            XcapError::CannotInsert => "cannot-insert",
            XcapError::CannotDelete => "cannot-delete",
            XcapError::ConstraintFailure(_) => "constraint-failure",
            _ => return None,
        })
    }

    /// The `application/xcap-error+xml` body for a 409, `None` for other statuses.
    pub fn body(&self) -> Option<Vec<u8>> {
        let condition = self.condition()?;
        let mut out = String::with_capacity(256);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-error xmlns=\"");
        out.push_str(XCAP_ERROR_NS);
        out.push_str("\"><");
        out.push_str(condition);
        let phrase = match self {
            XcapError::SchemaValidation(p) | XcapError::ConstraintFailure(p) => Some(*p),
            _ => None,
        };
        if let Some(p) = phrase {
            out.push_str(" phrase=\"");
            super::dom::escape_attr_into(p, &mut out);
            out.push('"');
        }
        match self {
            // RFC 4825 §11.2: <no-parent> may carry the closest existing <ancestor>.
            XcapError::NoParent(ancestor) => {
                out.push_str("><ancestor>");
                escape_text_into(ancestor, &mut out);
                out.push_str("</ancestor></");
                out.push_str(condition);
                out.push('>');
            }
            // RFC 4825 §11.2: one <exists field> per offending field, with <alt-value>s.
            XcapError::UniquenessFailure(list) => {
                out.push('>');
                for e in list.iter() {
                    out.push_str("<exists field=\"");
                    super::dom::escape_attr_into(&e.field, &mut out);
                    out.push('"');
                    if e.alt_values.is_empty() {
                        out.push_str("/>");
                        continue;
                    }
                    out.push('>');
                    for v in &e.alt_values {
                        out.push_str("<alt-value>");
                        escape_text_into(v, &mut out);
                        out.push_str("</alt-value>");
                    }
                    out.push_str("</exists>");
                }
                out.push_str("</");
                out.push_str(condition);
                out.push('>');
            }
            _ => out.push_str("/>"),
        }
        out.push_str("</xcap-error>\n");
        Some(out.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: &XcapError) -> String {
        String::from_utf8(e.body().expect("409 has a body")).expect("utf8")
    }

    #[test]
    fn every_409_has_its_condition_element() {
        let cases: Vec<(XcapError, &str)> = vec![
            (XcapError::NotWellFormed, "<not-well-formed/>"),
            (XcapError::NotXmlFrag, "<not-xml-frag/>"),
            (XcapError::NotXmlAttValue, "<not-xml-att-value/>"),
            (XcapError::NotUtf8, "<not-utf-8/>"),
            (
                XcapError::SchemaValidation("entry without uri"),
                "<schema-validation-error phrase=\"entry without uri\"/>",
            ),
            (XcapError::CannotInsert, "<cannot-insert/>"),
            (XcapError::CannotDelete, "<cannot-delete/>"),
            (
                XcapError::ConstraintFailure("too deep"),
                "<constraint-failure phrase=\"too deep\"/>",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.status(), 409, "{err:?}");
            let b = body(&err);
            assert!(
                b.contains("<xcap-error xmlns=\"urn:ietf:params:xml:ns:xcap-error\">"),
                "{b}"
            );
            assert!(b.contains(want), "{err:?}: {b}");
        }
    }

    #[test]
    fn no_parent_carries_ancestor() {
        let e = XcapError::NoParent("/xcap-root/resource-lists/users/sip:a@b/index".into());
        assert_eq!(
            body(&e),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-error xmlns=\"urn:ietf:params:xml:ns:xcap-error\"><no-parent><ancestor>/xcap-root/resource-lists/users/sip:a@b/index</ancestor></no-parent></xcap-error>\n"
        );
    }

    #[test]
    fn uniqueness_failure_carries_exists_and_alt_values() {
        let e = XcapError::UniquenessFailure(
            vec![Exists {
                field: "resource-lists/list[@name=\"a&b\"]/@name".into(),
                alt_values: vec!["a&b-1".into(), "a&b-2".into()],
            }]
            .into_boxed_slice(),
        );
        let b = body(&e);
        assert!(b.contains("<uniqueness-failure><exists field=\"resource-lists/list[@name=&quot;a&amp;b&quot;]/@name\"><alt-value>a&amp;b-1</alt-value><alt-value>a&amp;b-2</alt-value></exists></uniqueness-failure>"), "{b}");
    }

    #[test]
    fn non_409_statuses() {
        assert_eq!(XcapError::NotFound.status(), 404);
        assert_eq!(XcapError::NotFound.body(), None);
        assert_eq!(XcapError::MethodNotAllowed(Allow::Get).status(), 405);
        assert_eq!(
            XcapError::MethodNotAllowed(Allow::Get)
                .allow()
                .map(Allow::header_value),
            Some("GET")
        );
        assert_eq!(XcapError::PreconditionFailed.status(), 412);
        assert_eq!(XcapError::NotModified.status(), 304);
        assert_eq!(XcapError::UnsupportedMediaType.status(), 415);
        assert_eq!(
            XcapError::UnsupportedMediaType.reason(),
            "Unsupported Media Type"
        );
        assert_eq!(XcapError::BadRequest("x").status(), 400);
        assert_eq!(XcapError::TooLarge.status(), 413);
    }
}
