//! Small XML helpers shared by the message encoders and decoders: the declaration, attribute
//! escaping, reference resolution, and a reader for the service's own flat messages (a root
//! element holding empty child elements: messages 02, 05 and 06).

use chrono::{DateTime, SecondsFormat, Utc};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use uuid::Uuid;

use super::NAMESPACE;

/// The XML declaration every message starts with.
pub(crate) const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// True for a character XML 1.0 allows in a document.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Appends ` name="value"`, escaping the value so that a reader gets it back exactly: markup
/// characters and quotes as entities, tab, line feed and carriage return as character references
/// (which attribute-value normalisation keeps), and characters XML 1.0 forbids as U+FFFD.
pub(crate) fn attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out.push('"');
}

/// A timestamp as the messages carry it: RFC 3339 in UTC with `Z`.
pub(crate) fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The character an entity or character reference (`name` is what stands between `&` and `;`)
/// stands for. Only XML's five predefined entities and references to characters XML allows;
/// anything else is refused (no DTD, so no other entity exists).
pub(crate) fn resolve_reference(name: &str) -> Result<char, String> {
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => {
            let code = if let Some(hex) = name.strip_prefix("#x") {
                hex_or_dec(hex, 16)
            } else if let Some(dec) = name.strip_prefix('#') {
                hex_or_dec(dec, 10)
            } else {
                return Err(format!(
                    "the entity reference &{}; is not allowed (only &lt; &gt; &amp; &apos; &quot; and character \
                     references such as &#233; are)",
                    shorten(name)
                ));
            };
            match code.and_then(char::from_u32).filter(|c| is_xml_char(*c)) {
                Some(c) => c,
                None => return Err(format!("&{}; is not a reference to a character XML allows", shorten(name))),
            }
        }
    };
    Ok(c)
}

fn hex_or_dec(digits: &str, radix: u32) -> Option<u32> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// Appends the value of an attribute as written (`raw`, between the quotes) to `out`, resolving
/// references and normalising literal white space to spaces as XML requires. A `<` or a bare `&`
/// is refused.
pub(crate) fn unescape_attr(raw: &str, out: &mut String) -> Result<(), String> {
    if !raw.bytes().any(|b| matches!(b, b'&' | b'<' | b'\t' | b'\n' | b'\r')) {
        out.push_str(raw);
        return Ok(());
    }
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '<', '\t', '\n', '\r']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match tail.as_bytes()[0] {
            b'&' => {
                let end = tail.find(';').filter(|&e| e > 1 && !tail[1..e].contains(['&', '<', ' ']));
                let Some(end) = end else {
                    return Err("an attribute value holds an & that does not start a reference (write &amp;)".into());
                };
                out.push(resolve_reference(&tail[1..end])?);
                rest = &tail[end + 1..];
            }
            b'<' => return Err("an attribute value holds a < (write &lt;)".into()),
            b'\r' => {
                out.push(' ');
                rest = tail.strip_prefix("\r\n").unwrap_or(&tail[1..]);
            }
            _ => {
                out.push(' ');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(())
}

/// At most 60 characters of `s`, for quoting a bad value in a sentence.
pub(crate) fn shorten(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// 1-based line and column of byte offset `pos` in `text`.
pub(crate) fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &text[..pos];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// One element of a flat message, with its attributes unescaped.
#[derive(Debug)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
}

impl Element {
    /// The attribute's value, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The attribute's value; an error when it is missing.
    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("{} has no {name} attribute", self.name))
    }

    /// The attribute's value, None when missing or empty.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    pub fn uuid(&self, name: &str) -> Result<Uuid, String> {
        let v = self.required(name)?;
        Uuid::try_parse(v).map_err(|_| format!("{}'s {name} \"{}\" is not a UUID", self.name, shorten(v)))
    }

    pub fn timestamp(&self, name: &str) -> Result<DateTime<Utc>, String> {
        let v = self.required(name)?;
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| format!("{}'s {name} \"{}\" is not an RFC 3339 timestamp", self.name, shorten(v)))
    }

    pub fn number(&self, name: &str) -> Result<usize, String> {
        let v = self.required(name)?;
        v.parse().map_err(|_| format!("{}'s {name} \"{}\" is not a whole number", self.name, shorten(v)))
    }
}

fn element(e: &BytesStart<'_>) -> Result<Element, String> {
    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| format!("a malformed attribute on {name}: {err}"))?;
        let key = a.key.as_ref();
        if key == b"xmlns" || key.starts_with(b"xmlns:") {
            continue;
        }
        let raw = std::str::from_utf8(&a.value).map_err(|_| "an attribute is not UTF-8".to_owned())?;
        let mut value = String::with_capacity(raw.len());
        unescape_attr(raw, &mut value)?;
        attrs.push((String::from_utf8_lossy(key).into_owned(), value));
    }
    Ok(Element { name, attrs })
}

/// Reads one of the service's flat messages: the root element `root` in the CP-IS namespace
/// holding only empty child elements in that namespace. Returns the root and the children in
/// document order. Refuses a DTD, unknown entities, text outside the elements and nesting.
pub(crate) fn read_flat(xml: &str, root: &str) -> Result<(Element, Vec<Element>), String> {
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    if let Some(c) = xml.chars().find(|c| !is_xml_char(*c)) {
        return Err(format!("the message holds the character U+{:04X}, which XML does not allow", c as u32));
    }
    let mut reader = NsReader::from_str(xml);
    let mut top: Option<Element> = None;
    let mut children = Vec::new();
    let mut depth = 0usize;
    let mut closed = false;
    loop {
        let (ns, event) =
            reader.read_resolved_event().map_err(|e| format!("the message is not well-formed XML: {e}"))?;
        let ours = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == NAMESPACE.as_bytes());
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let el = element(e)?;
                if !ours {
                    return Err(format!("the element {} is not in namespace {NAMESPACE}", el.name));
                }
                match depth {
                    _ if closed => return Err(format!("the element {} comes after the root element", el.name)),
                    0 if el.name != root => return Err(format!("the root element is {}, not {root}", el.name)),
                    0 => top = Some(el),
                    1 => children.push(el),
                    _ => return Err(format!("the element {} is nested too deeply", el.name)),
                }
                if is_empty {
                    if depth == 0 {
                        closed = true;
                    }
                } else {
                    depth += 1;
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    closed = true;
                }
            }
            Event::Text(t) => {
                if !t.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
                    return Err("the message holds text outside its elements".into());
                }
            }
            Event::CData(_) | Event::GeneralRef(_) => {
                return Err("the message holds text outside its elements".into());
            }
            Event::DocType(_) => return Err("the message holds a DOCTYPE, which is not allowed".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    match top {
        Some(top) if closed => Ok((top, children)),
        Some(_) => Err(format!("the message ends before {root} is closed")),
        None => Err(format!("the message has no {root} element")),
    }
}
