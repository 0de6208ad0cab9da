//! Reads the known settings out of a service-settings document (SPEC D11, SPEC §6.1).
//!
//! Root `service-settings` in `urn:oma:xml:im:service-settings` or in no namespace; elements are
//! matched by local name; a known setting is `<group><leaf active="true|false|1|0"/></group>` or
//! the same with true/false/on/off as text content. Unknown elements are skipped (the caller keeps
//! the raw body). Bounded: depth, event count and text length; no DTD.

#![forbid(unsafe_code)]

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use super::NAMESPACE;
use super::error::{Setting, XmlFault};
use super::types::Settings;

const ROOT: &str = "service-settings";
/// Deepest element nesting accepted.
const MAX_DEPTH: usize = 16;
/// Most XML events (tags, text runs, comments) read from one document.
const MAX_EVENTS: usize = 4096;
/// Longest text content of a setting (`false` plus whitespace is plenty).
const MAX_VALUE_BYTES: usize = 64;

/// Where an element sits: the root, one of the setting groups, a setting, or anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Root,
    Group(Setting),
    Leaf(Setting),
    Other,
}

fn classify(parent: Node, local: &str) -> Node {
    let group = match local {
        "isb-settings" => return Node::Group(Setting::Isb),
        "vis-settings" => return Node::Group(Setting::Vis),
        "deferred-settings" => return Node::Group(Setting::OfflineDelivery),
        "hist-settings" => return Node::Group(Setting::History),
        "incoming-session-barring" => Setting::Isb,
        "vis-status" => Setting::Vis,
        "offline-delivery" => Setting::OfflineDelivery,
        "hist-activation" => Setting::History,
        _ => return Node::Other,
    };
    if parent == Node::Group(group) {
        Node::Leaf(group)
    } else {
        Node::Other
    }
}

fn parse_bool(text: &str, setting: Setting) -> Result<bool, XmlFault> {
    let text = text.trim();
    if ["true", "1", "on"]
        .iter()
        .any(|t| text.eq_ignore_ascii_case(t))
    {
        Ok(true)
    } else if ["false", "0", "off"]
        .iter()
        .any(|t| text.eq_ignore_ascii_case(t))
    {
        Ok(false)
    } else {
        Err(XmlFault::BadBoolean(setting))
    }
}

fn store(settings: &mut Settings, setting: Setting, value: bool) {
    let slot = match setting {
        Setting::Isb => &mut settings.isb,
        Setting::Vis => &mut settings.vis,
        Setting::OfflineDelivery => &mut settings.offline_delivery,
        Setting::History => &mut settings.history,
    };
    // Within one document the last mention wins.
    *slot = Some(value);
}

/// The `active` attribute of a setting element, matched by local name.
fn active_attribute(start: &BytesStart<'_>, setting: Setting) -> Result<Option<bool>, XmlFault> {
    for attr in start.attributes() {
        let attr = attr.map_err(|_| XmlFault::NotWellFormed)?;
        if attr.key.local_name().as_ref() == "active" {
            return parse_bool(&attr.value, setting).map(Some);
        }
    }
    Ok(None)
}

/// Parser state while walking the document.
#[derive(Default)]
struct Walk {
    stack: Vec<Node>,
    root_done: bool,
    settings: Settings,
    /// Text of the setting element being read, when it had no `active` attribute.
    text: Option<(Setting, String)>,
}

impl Walk {
    fn open(&mut self, ns: &ResolveResult<'_>, start: &BytesStart<'_>) -> Result<Node, XmlFault> {
        let local = start.local_name();
        let local = local.as_ref();
        let node = match self.stack.last() {
            None => {
                if self.root_done {
                    return Err(XmlFault::NotWellFormed); // a second root element
                }
                if local != ROOT {
                    return Err(XmlFault::WrongRoot);
                }
                match ns {
                    ResolveResult::Unbound => {}
                    ResolveResult::Bound(n) if n.0 == NAMESPACE => {}
                    ResolveResult::Bound(_) => return Err(XmlFault::WrongNamespace),
                    ResolveResult::Unknown(_) => return Err(XmlFault::NotWellFormed),
                }
                Node::Root
            }
            Some(parent) => classify(*parent, local),
        };
        if self.stack.len() >= MAX_DEPTH {
            return Err(XmlFault::TooDeep);
        }
        Ok(node)
    }

    fn start(&mut self, ns: &ResolveResult<'_>, start: &BytesStart<'_>) -> Result<(), XmlFault> {
        let node = self.open(ns, start)?;
        if let Node::Leaf(setting) = node {
            match active_attribute(start, setting)? {
                Some(value) => store(&mut self.settings, setting, value),
                None => self.text = Some((setting, String::new())),
            }
        }
        self.stack.push(node);
        Ok(())
    }

    fn empty(&mut self, ns: &ResolveResult<'_>, start: &BytesStart<'_>) -> Result<(), XmlFault> {
        let node = self.open(ns, start)?;
        if let Node::Leaf(setting) = node
            && let Some(value) = active_attribute(start, setting)?
        {
            store(&mut self.settings, setting, value);
        }
        if node == Node::Root {
            self.root_done = true;
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), XmlFault> {
        let node = self.stack.pop().ok_or(XmlFault::NotWellFormed)?;
        if let Node::Leaf(setting) = node
            && let Some((_, text)) = self.text.take()
            && !text.trim().is_empty()
        {
            store(&mut self.settings, setting, parse_bool(&text, setting)?);
        }
        if self.stack.is_empty() {
            self.root_done = true;
        }
        Ok(())
    }

    fn text(&mut self, content: &str) -> Result<(), XmlFault> {
        if self.stack.is_empty() {
            // Only whitespace may stand outside the root element.
            return if content.trim().is_empty() {
                Ok(())
            } else {
                Err(XmlFault::NotWellFormed)
            };
        }
        if let Some((setting, text)) = self.text.as_mut() {
            if text.len() + content.len() > MAX_VALUE_BYTES {
                return Err(XmlFault::BadBoolean(*setting));
            }
            text.push_str(content);
        }
        Ok(())
    }

    /// An entity or character reference: fine in unknown content, never part of a boolean.
    fn reference(&mut self) -> Result<(), XmlFault> {
        match &self.text {
            Some((setting, _)) => Err(XmlFault::BadBoolean(*setting)),
            None if self.stack.is_empty() => Err(XmlFault::NotWellFormed),
            None => Ok(()),
        }
    }
}

/// Parses a service-settings document into its known settings.
pub fn parse_service_settings(body: &[u8]) -> Result<Settings, XmlFault> {
    let text = std::str::from_utf8(body).map_err(|_| XmlFault::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = NsReader::from_str(text);
    let mut walk = Walk::default();
    for _ in 0..MAX_EVENTS {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|_| XmlFault::NotWellFormed)?;
        match event {
            Event::Start(e) => walk.start(&ns, &e)?,
            Event::Empty(e) => walk.empty(&ns, &e)?,
            Event::End(_) => walk.end()?,
            Event::Text(t) => walk.text(&t)?,
            Event::CData(t) => walk.text(&t)?,
            Event::GeneralRef(_) => walk.reference()?,
            Event::DocType(_) => return Err(XmlFault::DtdNotAllowed),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => {
                if !walk.stack.is_empty() {
                    return Err(XmlFault::NotWellFormed);
                }
                if !walk.root_done {
                    return Err(XmlFault::NoRoot);
                }
                return Ok(walk.settings);
            }
        }
    }
    Err(XmlFault::TooLong)
}

#[cfg(test)]
mod unit {
    use super::*;

    fn parse(doc: &str) -> Result<Settings, XmlFault> {
        parse_service_settings(doc.as_bytes())
    }

    #[test]
    fn the_spec_example() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<service-settings xmlns="urn:oma:xml:im:service-settings">
  <isb-settings>
    <incoming-session-barring active="true"/>
  </isb-settings>
  <vis-settings>
    <vis-status active="false"/>
  </vis-settings>
  <deferred-settings>
    <offline-delivery active="true"/>
  </deferred-settings>
</service-settings>"#;
        assert_eq!(
            parse(doc),
            Ok(Settings {
                isb: Some(true),
                vis: Some(false),
                offline_delivery: Some(true),
                history: None,
            })
        );
    }

    #[test]
    fn prefixes_text_values_numbers_and_unknown_elements() {
        let doc = r#"<ss:service-settings xmlns:ss="urn:oma:xml:im:service-settings" xmlns:x="urn:example">
  <ss:service-id>abc</ss:service-id>
  <x:vendor><x:isb-settings><x:incoming-session-barring active="true"/></x:isb-settings></x:vendor>
  <ss:hist-settings><ss:hist-activation type="all"> On </ss:hist-activation></ss:hist-settings>
  <ss:vis-settings><ss:vis-status ss:active="0"/></ss:vis-settings>
  <ss:session-mode>whatever &amp; more</ss:session-mode>
  <!-- a comment -->
</ss:service-settings>"#;
        let s = parse(doc).expect("valid");
        assert_eq!(s.history, Some(true));
        assert_eq!(s.vis, Some(false));
        // Matched on local names at any depth: the vendor wrapper still counts.
        assert_eq!(s.isb, Some(true));
    }

    #[test]
    fn no_namespace_is_accepted_and_an_empty_root_is_valid() {
        assert_eq!(parse("<service-settings/>"), Ok(Settings::default()));
        let s = parse(
            "<service-settings><isb-settings><incoming-session-barring>off</incoming-session-barring></isb-settings></service-settings>",
        );
        assert_eq!(s.map(|s| s.isb), Ok(Some(false)));
    }

    #[test]
    fn a_leaf_outside_its_group_is_not_a_setting() {
        let s = parse(
            "<service-settings><incoming-session-barring active=\"true\"/></service-settings>",
        );
        assert_eq!(s, Ok(Settings::default()));
    }

    #[test]
    fn faults_are_named() {
        let table = [
            ("", XmlFault::NoRoot),
            ("<?xml version=\"1.0\"?>", XmlFault::NoRoot),
            ("<presence/>", XmlFault::WrongRoot),
            (
                "<service-settings xmlns=\"urn:other\"/>",
                XmlFault::WrongNamespace,
            ),
            ("<service-settings>", XmlFault::NotWellFormed),
            ("<service-settings></other>", XmlFault::NotWellFormed),
            (
                "<service-settings/><service-settings/>",
                XmlFault::NotWellFormed,
            ),
            ("<service-settings/>junk", XmlFault::NotWellFormed),
            ("<p:service-settings/>", XmlFault::NotWellFormed),
            (
                "<!DOCTYPE x [<!ENTITY a \"b\">]><service-settings/>",
                XmlFault::DtdNotAllowed,
            ),
            (
                "<service-settings><isb-settings><incoming-session-barring active=\"yes\"/></isb-settings></service-settings>",
                XmlFault::BadBoolean(Setting::Isb),
            ),
            (
                "<service-settings><vis-settings><vis-status>maybe</vis-status></vis-settings></service-settings>",
                XmlFault::BadBoolean(Setting::Vis),
            ),
            (
                "<service-settings><deferred-settings><offline-delivery>&lt;</offline-delivery></deferred-settings></service-settings>",
                XmlFault::BadBoolean(Setting::OfflineDelivery),
            ),
        ];
        for (doc, fault) in table {
            assert_eq!(parse(doc), Err(fault), "{doc}");
        }
        assert_eq!(
            parse_service_settings(&[0x3c, 0xff, 0x3e]),
            Err(XmlFault::NotUtf8)
        );
    }

    #[test]
    fn limits() {
        let deep = format!(
            "<service-settings>{}{}</service-settings>",
            "<a>".repeat(40),
            "</a>".repeat(40)
        );
        assert_eq!(parse(&deep), Err(XmlFault::TooDeep));
        let many = format!(
            "<service-settings>{}</service-settings>",
            "<a/>".repeat(5000)
        );
        assert_eq!(parse(&many), Err(XmlFault::TooLong));
        let long = format!(
            "<service-settings><hist-settings><hist-activation>{}true</hist-activation></hist-settings></service-settings>",
            " ".repeat(100)
        );
        assert_eq!(parse(&long), Err(XmlFault::BadBoolean(Setting::History)));
    }
}
