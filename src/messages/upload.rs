//! Decoding message 01, the Local Authority Upload (messages.md, "01 Local Authority Upload" and
//! "File checks").
//!
//! [`parse`] streams the file with quick-xml (no DOM: memory follows the records read) and either
//! returns the [`Upload`] or a [`Rejection`], which always means file code CPF03. It checks
//! structure only: the records come back as raw text ([`RawRecord`]) for the record checks
//! (`domain::record_checks`), and a structural problem inside a record (an unknown element, a field
//! given twice, a value over the length limit) is a fault of that record, never of the file.
//!
//! The file is refused when it is not well-formed XML (including invalid UTF-8, characters XML
//! forbids, and content after the root element), holds a DOCTYPE (no DTD is ever read, so no
//! entity is ever expanded; a reference to any entity but XML's five predefined ones is refused),
//! its root is not `LAUpload` in the CP-IS namespace, its `messageId` is missing or not a UUID, its
//! `sequence` is missing or not an unsigned whole number of at most 18 digits, it has no `Sender`
//! or more than one, the Sender lacks `odsCode`, `name` or `emergencyPhone` (empty counts as
//! missing), it holds no `Record`, or more records than [`Limits::max_records`].

use quick_xml::errors::IllFormedError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use uuid::Uuid;

use super::record::{RawItem, RawRecord};
use super::xml::{line_col, resolve_reference, shorten, unescape_attr};
use super::NAMESPACE;
use crate::domain::retrieval::ItemKind;

/// Limits on what one file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most records a file may hold; more is a file rejection.
    pub max_records: usize,
    /// The longest value (attribute or element text, in bytes of UTF-8) kept; a longer value in a
    /// record is a fault of that record, in the file header a file rejection.
    pub max_field_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_records: 250_000, max_field_len: 1_000 }
    }
}

/// The `Sender` element: the LA and the numbers clinicians are shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub ods_code: String,
    pub name: String,
    pub emergency_phone: String,
    /// None when absent or empty.
    pub office_hours_phone: Option<String>,
}

/// A message 01 that passed the structural checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub message_id: Uuid,
    pub sequence: u64,
    /// The `created` attribute as sent (not checked); None when absent or empty.
    pub created: Option<String>,
    pub sender: Sender,
    /// Every `Record`, in file order, numbered from 1.
    pub records: Vec<RawRecord>,
}

/// Why a file was refused (file code CPF03).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What is wrong, as a sentence an LA developer can act on (lower case first, no final stop,
    /// so that it reads after "Rejected: ").
    pub reason: String,
    /// The file's `messageId`, whenever the root element's attribute could be read as a UUID.
    pub message_id: Option<Uuid>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Rejection {}

/// Decodes a message 01. Never panics, whatever the bytes.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Upload, Rejection> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let prefix = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let (line, column) = line_col(prefix, prefix.len());
            let reason = format!(
                "the file is not valid UTF-8 (the bytes at line {line}, column {column} are not a UTF-8 character); \
                 send uploads encoded in UTF-8"
            );
            return Err(Rejection { reason, message_id: id_in_prefix(prefix, limits) });
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(pos) = first_forbidden_char(text) {
        let (line, column) = line_col(text, pos);
        let c = text[pos..].chars().next().unwrap_or_default();
        let reason = format!(
            "the file holds the character U+{:04X} at line {line}, column {column}, which XML does not allow",
            c as u32
        );
        return Err(Rejection { reason, message_id: id_in_prefix(&text[..pos], limits) });
    }
    Reading::new(text, limits, false).run()
}

/// The root's messageId in the readable start of a file that is refused further on.
fn id_in_prefix(prefix: &str, limits: &Limits) -> Option<Uuid> {
    match Reading::new(prefix, limits, true).run() {
        Ok(upload) => Some(upload.message_id),
        Err(r) => r.message_id,
    }
}

/// Byte offset of the first character XML 1.0 forbids (controls other than tab, line feed and
/// carriage return; U+FFFE and U+FFFF). The text is valid UTF-8, so surrogates cannot occur.
fn first_forbidden_char(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let bad = |i: usize, c: u8| {
        (c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r'))
            || (c == 0xEF && b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)))
    };
    // A branch-free test of each block first (it vectorises), the exact test only where it hits.
    for (n, block) in b.chunks(64).enumerate() {
        let suspect = block
            .iter()
            .fold(false, |acc, &c| acc | ((c < 0x20) & (c != b'\t') & (c != b'\n') & (c != b'\r')) | (c == 0xEF));
        if suspect {
            let start = n * 64;
            if let Some(i) = (start..start + block.len()).find(|&i| bad(i, b[i])) {
                return Some(i);
            }
        }
    }
    None
}

/// `reason` cut to at most [`MAX_REASON_LEN`] bytes (ending "..." when cut): a backstop for
/// reasons that quote the parser's own error text, which may quote the file at any length.
fn capped(reason: String) -> String {
    if reason.len() <= MAX_REASON_LEN {
        return reason;
    }
    let mut end = MAX_REASON_LEN - 3;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &reason[..end])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    NhsNumber,
    GivenName,
    FamilyName,
    BirthDate,
}

impl Field {
    fn from_local(name: &[u8]) -> Option<Field> {
        Some(match name {
            b"NhsNumber" => Field::NhsNumber,
            b"GivenName" => Field::GivenName,
            b"FamilyName" => Field::FamilyName,
            b"BirthDate" => Field::BirthDate,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::NhsNumber => "NhsNumber",
            Field::GivenName => "GivenName",
            Field::FamilyName => "FamilyName",
            Field::BirthDate => "BirthDate",
        }
    }

    fn slot(self, record: &mut RawRecord) -> &mut Option<String> {
        match self {
            Field::NhsNumber => &mut record.nhs_number,
            Field::GivenName => &mut record.given_name,
            Field::FamilyName => &mut record.family_name,
            Field::BirthDate => &mut record.birth_date,
        }
    }
}

fn item_kind(name: &[u8]) -> Option<ItemKind> {
    Some(match name {
        b"ChildProtectionPlan" => ItemKind::ChildProtectionPlan,
        b"LookedAfterChild" => ItemKind::LookedAfterChild,
        b"UnbornChildProtectionPlan" => ItemKind::UnbornChildProtectionPlan,
        _ => return None,
    })
}

fn item_name(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::ChildProtectionPlan => "ChildProtectionPlan",
        ItemKind::LookedAfterChild => "LookedAfterChild",
        ItemKind::UnbornChildProtectionPlan => "UnbornChildProtectionPlan",
    }
}

/// Where the reader is in the document (outside any ignored subtree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the root element.
    Prolog,
    /// Directly inside `LAUpload`.
    Root,
    Sender,
    Record,
    Field(Field),
    Item(ItemKind),
    /// After the root element closed.
    After,
}

/// The namespace an element resolved to.
enum Ns {
    Ours,
    None,
    Other(String),
    UnknownPrefix,
}

fn classify(ns: &ResolveResult<'_>) -> Ns {
    match ns {
        ResolveResult::Bound(n) if n.as_ref() == NAMESPACE.as_bytes() => Ns::Ours,
        ResolveResult::Bound(n) => Ns::Other(String::from_utf8_lossy(n.as_ref()).into_owned()),
        ResolveResult::Unbound => Ns::None,
        ResolveResult::Unknown(_) => Ns::UnknownPrefix,
    }
}

fn is_blank(s: &str) -> bool {
    is_blank_bytes(s.as_bytes())
}

fn is_blank_bytes(s: &[u8]) -> bool {
    s.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

fn qname(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.name().as_ref()).into_owned()
}

struct Reading<'a> {
    text: &'a str,
    limits: &'a Limits,
    /// Stop once the root element's messageId is known (used to report it for a file refused
    /// further on).
    id_only: bool,
    message_id: Option<Uuid>,
    sequence: Option<u64>,
    created: Option<String>,
    sender: Option<Sender>,
    records: Vec<RawRecord>,
    state: State,
    /// Open elements inside an ignored subtree.
    skip: usize,
    record: RawRecord,
    /// Which fields the current record has given.
    seen: [bool; 4],
    /// The current field repeats an earlier one: its text is ignored.
    field_repeated: bool,
    /// Text of the current field so far (leading white space dropped).
    field_text: String,
    field_too_long: bool,
    /// "unexpected text" already reported for the current record.
    text_fault: bool,
    /// Scratch for attribute values.
    value: String,
}

impl<'a> Reading<'a> {
    fn new(text: &'a str, limits: &'a Limits, id_only: bool) -> Self {
        Reading {
            text,
            limits,
            id_only,
            message_id: None,
            sequence: None,
            created: None,
            sender: None,
            records: Vec::new(),
            state: State::Prolog,
            skip: 0,
            record: RawRecord::default(),
            seen: [false; 4],
            field_repeated: false,
            field_text: String::new(),
            field_too_long: false,
            text_fault: false,
            value: String::new(),
        }
    }

    fn reject(&self, reason: impl Into<String>) -> Rejection {
        Rejection { reason: capped(reason.into()), message_id: self.message_id }
    }

    fn at(&self, pos: u64) -> String {
        let (line, column) = line_col(self.text, usize::try_from(pos).unwrap_or(usize::MAX));
        format!("line {line}, column {column}")
    }

    fn run(mut self) -> Result<Upload, Rejection> {
        let mut reader = NsReader::from_str(self.text);
        reader.config_mut().check_comments = true;
        let mut first = true;
        loop {
            let (ns, event) = match reader.read_event() {
                Ok(event) => {
                    let ns = match &event {
                        Event::Start(e) | Event::Empty(e) => classify(&reader.resolve_element(e.name()).0),
                        _ => Ns::None,
                    };
                    (ns, event)
                }
                Err(quick_xml::Error::IllFormed(IllFormedError::UnclosedReference)) => {
                    let at = self.at(reader.error_position());
                    return Err(self.reject(format!(
                        "the file is not well-formed XML at {at}: an & does not start a reference (write &amp;)"
                    )));
                }
                Err(quick_xml::Error::IllFormed(IllFormedError::MismatchedEndTag { expected, found })) => {
                    let at = self.at(reader.error_position());
                    return Err(self.reject(format!(
                        "the file is not well-formed XML at {at}: the end tag </{}> does not close <{}>",
                        shorten(&found),
                        shorten(&expected)
                    )));
                }
                Err(quick_xml::Error::IllFormed(IllFormedError::UnmatchedEndTag(name))) => {
                    let at = self.at(reader.error_position());
                    return Err(self.reject(format!(
                        "the file is not well-formed XML at {at}: the end tag </{}> has no start tag",
                        shorten(&name)
                    )));
                }
                Err(e) => {
                    let at = self.at(reader.error_position());
                    return Err(self.reject(format!("the file is not well-formed XML at {at}: {e}")));
                }
            };
            let is_first = std::mem::replace(&mut first, false);
            let pos = reader.buffer_position();
            match event {
                Event::Start(e) => self.start(&e, ns, false, pos)?,
                Event::Empty(e) => self.start(&e, ns, true, pos)?,
                Event::End(_) => self.end(pos)?,
                Event::Text(t) => {
                    if !matches!(self.state, State::Field(_)) && is_blank_bytes(&t) {
                        continue;
                    }
                    let t = t.xml10_content().map_err(|e| self.reject(format!("the file cannot be read: {e}")))?;
                    self.text(&t, pos)?;
                }
                Event::CData(t) => {
                    if matches!(self.state, State::Prolog | State::After) && self.skip == 0 {
                        let at = self.at(pos);
                        return Err(self.reject(format!("the file holds a CDATA section outside LAUpload at {at}")));
                    }
                    let t = t.xml_content().map_err(|e| self.reject(format!("the file cannot be read: {e}")))?;
                    self.text(&t, pos)?;
                }
                Event::GeneralRef(r) => {
                    let name = String::from_utf8_lossy(&r);
                    let c = match resolve_reference(&name) {
                        Ok(c) => c,
                        Err(why) => {
                            let at = self.at(pos);
                            return Err(self.reject(format!("the file is not acceptable XML at {at}: {why}")));
                        }
                    };
                    if matches!(self.state, State::Prolog | State::After) {
                        let at = self.at(pos);
                        return Err(self.reject(format!("the file holds a reference outside LAUpload at {at}")));
                    }
                    self.text(c.encode_utf8(&mut [0; 4]), pos)?;
                }
                Event::DocType(_) => {
                    return Err(self.reject(
                        "the file holds a DOCTYPE declaration; CP-IS accepts no DTD or entity declarations, so \
                         remove it",
                    ));
                }
                Event::Decl(d) => {
                    if !is_first {
                        let at = self.at(pos);
                        return Err(self.reject(format!(
                            "the file is not well-formed XML: the XML declaration at {at} must be at the very start"
                        )));
                    }
                    match d.version() {
                        Ok(v) if v.as_ref() == b"1.0" => {}
                        _ => return Err(self.reject("the XML declaration must say version=\"1.0\"")),
                    }
                    if let Some(enc) = d.encoding() {
                        let ok = enc.is_ok_and(|e| {
                            let e = e.to_ascii_lowercase();
                            matches!(e.as_slice(), b"utf-8" | b"utf8" | b"us-ascii" | b"ascii")
                        });
                        if !ok {
                            return Err(self.reject(
                                "the XML declaration names an encoding other than UTF-8; send uploads encoded in \
                                 UTF-8 and declare encoding=\"UTF-8\"",
                            ));
                        }
                    }
                }
                Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => return self.finish(),
            }
        }
    }

    fn start(&mut self, e: &BytesStart<'_>, ns: Ns, empty: bool, pos: u64) -> Result<(), Rejection> {
        if let Ns::UnknownPrefix = ns {
            let at = self.at(pos);
            return Err(self.reject(format!(
                "the file is not well-formed XML at {at}: the element {} uses a namespace prefix that is not declared",
                shorten(&qname(e))
            )));
        }
        if self.skip > 0 {
            self.attributes(e, pos, |_, _| {})?;
            if !empty {
                self.skip += 1;
            }
            return Ok(());
        }
        let local = e.local_name();
        let local = local.as_ref();
        let ours = matches!(ns, Ns::Ours);
        match self.state {
            State::Prolog => self.root(e, ns, empty, pos),
            State::After => {
                let at = self.at(pos);
                Err(self.reject(format!(
                    "the file is not well-formed XML: the element {} at {at} comes after the end of LAUpload",
                    shorten(&qname(e))
                )))
            }
            State::Root if ours && local == b"Sender" => {
                self.sender(e, pos)?;
                if !empty {
                    self.state = State::Sender;
                }
                Ok(())
            }
            State::Root if ours && local == b"Record" => {
                if self.records.len() >= self.limits.max_records {
                    let max = self.limits.max_records;
                    return Err(self.reject(format!(
                        "the file holds more than {max} records; split it into files of at most {max} records"
                    )));
                }
                self.record = RawRecord { index: self.records.len() + 1, ..RawRecord::default() };
                self.seen = [false; 4];
                self.text_fault = false;
                let max = self.limits.max_field_len;
                let mut child_id = None;
                let mut too_long = false;
                self.attributes(e, pos, |key, value| {
                    if key == b"laChildId" {
                        if value.len() > max {
                            too_long = true;
                        } else if !value.is_empty() {
                            child_id = Some(value.to_owned());
                        }
                    }
                })?;
                self.record.la_child_id = child_id;
                if too_long {
                    self.record.faults.push(format!("laChildId is longer than {max} characters"));
                }
                if empty {
                    self.records.push(std::mem::take(&mut self.record));
                } else {
                    self.state = State::Record;
                }
                Ok(())
            }
            State::Root => {
                let at = self.at(pos);
                let name = shorten(&qname(e));
                Err(self.reject(match ns {
                    Ns::Ours => format!(
                        "unexpected element {name} inside LAUpload at {at}; LAUpload holds one Sender and Record elements"
                    ),
                    _ => format!(
                        "unexpected element {name} inside LAUpload at {at}; LAUpload holds one Sender and Record \
                         elements, in namespace {NAMESPACE}"
                    ),
                }))
            }
            State::Sender => {
                let at = self.at(pos);
                Err(self.reject(format!(
                    "unexpected element {} inside Sender at {at}; Sender is an empty element",
                    shorten(&qname(e))
                )))
            }
            State::Record => {
                if let (true, Some(field)) = (ours, Field::from_local(local)) {
                    self.attributes(e, pos, |_, _| {})?;
                    let i = field as usize;
                    self.field_repeated = self.seen[i];
                    self.seen[i] = true;
                    if self.field_repeated {
                        self.record.faults.push(format!("{} is given twice", field.name()));
                    }
                    self.field_text.clear();
                    self.field_too_long = false;
                    if empty {
                        self.end_field(field);
                    } else {
                        self.state = State::Field(field);
                    }
                } else if let (true, Some(kind)) = (ours, item_kind(local)) {
                    let max = self.limits.max_field_len;
                    let mut item = RawItem { kind, start: None, end: None, delete: None };
                    let mut faults: [Option<&'static str>; 3] = [None; 3];
                    self.attributes(e, pos, |key, value| {
                        let (slot, n, name) = match key {
                            b"start" => (&mut item.start, 0, "start"),
                            b"end" => (&mut item.end, 1, "end"),
                            b"delete" => (&mut item.delete, 2, "delete"),
                            _ => return,
                        };
                        if value.len() > max {
                            faults[n] = Some(name);
                        } else if !value.is_empty() {
                            *slot = Some(value.to_owned());
                        }
                    })?;
                    for name in faults.into_iter().flatten() {
                        self.record.faults.push(format!("{} {name} is longer than {max} characters", item_name(kind)));
                    }
                    self.record.items.push(item);
                    if !empty {
                        self.state = State::Item(kind);
                    }
                } else {
                    self.unexpected(e, &ns, empty, pos)?;
                }
                Ok(())
            }
            State::Field(_) | State::Item(_) => self.unexpected(e, &ns, empty, pos),
        }
    }

    /// An element a record does not expect: a fault of the record; its content is skipped.
    fn unexpected(&mut self, e: &BytesStart<'_>, ns: &Ns, empty: bool, pos: u64) -> Result<(), Rejection> {
        self.attributes(e, pos, |_, _| {})?;
        let name = shorten(&qname(e));
        self.record.faults.push(match ns {
            Ns::Other(ns) => format!("unexpected element {name} (in namespace {})", shorten(ns)),
            _ => format!("unexpected element {name}"),
        });
        if !empty {
            self.skip = 1;
        }
        Ok(())
    }

    /// Checks and unescapes every attribute of `e`, calling `f(name, value)` for each (namespace
    /// declarations included).
    fn attributes(&mut self, e: &BytesStart<'_>, pos: u64, mut f: impl FnMut(&[u8], &str)) -> Result<(), Rejection> {
        let mut value = std::mem::take(&mut self.value);
        let result = (|| {
            for a in e.attributes() {
                let a = a.map_err(|err| format!("a malformed attribute on {}: {err}", shorten(&qname(e))))?;
                let raw = std::str::from_utf8(&a.value).map_err(|_| "an attribute value is not UTF-8".to_owned())?;
                value.clear();
                unescape_attr(raw, &mut value)?;
                f(a.key.as_ref(), &value);
            }
            Ok::<(), String>(())
        })();
        self.value = value;
        result.map_err(|why| {
            let at = self.at(pos);
            self.reject(format!("the file is not well-formed XML at {at}: {why}"))
        })
    }

    fn root(&mut self, e: &BytesStart<'_>, ns: Ns, empty: bool, pos: u64) -> Result<(), Rejection> {
        let mut id = None;
        let mut sequence = None;
        let mut created = None;
        let read = self.attributes(e, pos, |key, value| match key {
            b"messageId" => id = Some(value.to_owned()),
            b"sequence" => sequence = Some(value.to_owned()),
            b"created" => created = Some(value.to_owned()),
            _ => {}
        });
        self.message_id = id.as_deref().and_then(|v| Uuid::try_parse(v).ok());
        read?;
        if self.id_only {
            return Err(self.reject(""));
        }
        let name = qname(e);
        if e.local_name().as_ref() != b"LAUpload" {
            return Err(self.reject(format!(
                "the root element is {}; an upload's root element is LAUpload in namespace {NAMESPACE}",
                shorten(&name)
            )));
        }
        match ns {
            Ns::Ours => {}
            Ns::None => {
                return Err(self.reject(format!(
                    "LAUpload is in no namespace; it must be in namespace {NAMESPACE} (add xmlns=\"{NAMESPACE}\")"
                )))
            }
            Ns::Other(other) => {
                return Err(self.reject(format!(
                    "LAUpload is in namespace \"{}\"; it must be in namespace {NAMESPACE}",
                    shorten(&other)
                )))
            }
            Ns::UnknownPrefix => {
                return Err(self.reject("LAUpload's namespace prefix is not declared; declare it with xmlns"))
            }
        }
        match (&id, self.message_id) {
            (None, _) => {
                return Err(
                    self.reject("LAUpload has no messageId attribute; give every file a new UUID as its messageId")
                )
            }
            (Some(v), None) => {
                return Err(self.reject(format!(
                    "LAUpload's messageId \"{}\" is not a UUID (such as 0b7c1f0e-8d1a-4a51-9a6e-3c2f5a1d9e40)",
                    shorten(v)
                )))
            }
            (Some(_), Some(_)) => {}
        }
        let Some(sequence) = sequence else {
            return Err(self.reject(
                "LAUpload has no sequence attribute; number the files from your authority with a rising whole number",
            ));
        };
        if sequence.is_empty() || sequence.len() > 18 || !sequence.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.reject(format!(
                "LAUpload's sequence \"{}\" is not a whole number of 1 to 18 digits (no sign, no spaces)",
                shorten(&sequence)
            )));
        }
        self.sequence = sequence.parse().ok();
        if let Some(c) = created.filter(|c| !c.is_empty()) {
            if c.len() > self.limits.max_field_len {
                return Err(self.reject(format!(
                    "LAUpload's created attribute is longer than {} characters",
                    self.limits.max_field_len
                )));
            }
            self.created = Some(c);
        }
        self.state = if empty { State::After } else { State::Root };
        Ok(())
    }

    fn sender(&mut self, e: &BytesStart<'_>, pos: u64) -> Result<(), Rejection> {
        if self.sender.is_some() {
            let at = self.at(pos);
            return Err(self.reject(format!("the file has a second Sender element at {at}; give exactly one Sender")));
        }
        let mut values: [Option<String>; 4] = Default::default();
        self.attributes(e, pos, |key, value| {
            let i = match key {
                b"odsCode" => 0,
                b"name" => 1,
                b"emergencyPhone" => 2,
                b"officeHoursPhone" => 3,
                _ => return,
            };
            values[i] = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        })?;
        let names = ["odsCode", "name", "emergencyPhone", "officeHoursPhone"];
        for (value, name) in values.iter().zip(names) {
            if value.as_ref().is_some_and(|v| v.len() > self.limits.max_field_len) {
                return Err(
                    self.reject(format!("the Sender {name} is longer than {} characters", self.limits.max_field_len))
                );
            }
        }
        let [ods_code, name, emergency_phone, office_hours_phone] = values;
        let missing = |what: &str, why: &str| self.reject(format!("the Sender has no {what} (or it is empty); {why}"));
        let ods_code = ods_code.ok_or_else(|| missing("odsCode", "give your authority's ODS code"))?;
        let name = name.ok_or_else(|| missing("name", "give the name clinicians should see"))?;
        let emergency_phone =
            emergency_phone.ok_or_else(|| missing("emergencyPhone", "give the emergency duty telephone number"))?;
        self.sender = Some(Sender { ods_code, name, emergency_phone, office_hours_phone });
        Ok(())
    }

    fn text(&mut self, t: &str, pos: u64) -> Result<(), Rejection> {
        if self.skip > 0 {
            return Ok(());
        }
        match self.state {
            State::Field(_) => {
                if !self.field_repeated && !self.field_too_long {
                    let t = if self.field_text.is_empty() { t.trim_start() } else { t };
                    self.field_text.push_str(t);
                    if self.field_text.len() > self.limits.max_field_len
                        && self.field_text.trim_end().len() > self.limits.max_field_len
                    {
                        self.field_too_long = true;
                        self.field_text = String::new();
                    }
                }
                Ok(())
            }
            _ if is_blank(t) => Ok(()),
            State::Record | State::Item(_) => {
                if !self.text_fault {
                    self.text_fault = true;
                    let inside = match self.state {
                        State::Item(kind) => item_name(kind),
                        _ => "Record",
                    };
                    self.record.faults.push(format!("unexpected text inside {inside}"));
                }
                Ok(())
            }
            State::Prolog | State::After => {
                let at = self.at(pos);
                Err(self.reject(format!("the file is not well-formed XML: text outside LAUpload (before {at})")))
            }
            State::Root | State::Sender => {
                let at = self.at(pos);
                let inside = if self.state == State::Root { "LAUpload" } else { "Sender" };
                Err(self.reject(format!("unexpected text inside {inside} (before {at}); it holds only elements")))
            }
        }
    }

    fn end_field(&mut self, field: Field) {
        if self.field_repeated {
            return;
        }
        let max = self.limits.max_field_len;
        let value = self.field_text.trim();
        let value = if self.field_too_long || value.len() > max {
            self.record.faults.push(format!("{} is longer than {max} characters", field.name()));
            None
        } else if value.is_empty() {
            None
        } else {
            Some(value.to_owned())
        };
        *field.slot(&mut self.record) = value;
    }

    fn end(&mut self, pos: u64) -> Result<(), Rejection> {
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(());
        }
        self.state = match self.state {
            State::Field(field) => {
                self.end_field(field);
                State::Record
            }
            State::Item(_) => State::Record,
            State::Record => {
                self.records.push(std::mem::take(&mut self.record));
                State::Root
            }
            State::Sender => State::Root,
            State::Root => State::After,
            State::Prolog | State::After => {
                let at = self.at(pos);
                return Err(self.reject(format!("the file is not well-formed XML: an end tag without a start at {at}")));
            }
        };
        Ok(())
    }

    fn finish(self) -> Result<Upload, Rejection> {
        if self.id_only {
            return Err(self.reject(""));
        }
        match self.state {
            State::After => {}
            State::Prolog => {
                return Err(self.reject("the file holds no XML element; an upload is one LAUpload element"));
            }
            _ => {
                return Err(self.reject(
                    "the file is not well-formed XML: it ends before LAUpload is closed (it may have been cut short)",
                ));
            }
        }
        let (Some(message_id), Some(sequence)) = (self.message_id, self.sequence) else {
            return Err(self.reject("the file has no LAUpload element"));
        };
        let Some(sender) = self.sender else {
            return Err(Rejection {
                reason: "the file has no Sender element; give one Sender with odsCode, name and emergencyPhone".into(),
                message_id: self.message_id,
            });
        };
        if self.records.is_empty() {
            return Err(Rejection {
                reason: "the file holds no Record; send at least one Record".into(),
                message_id: self.message_id,
            });
        }
        Ok(Upload { message_id, sequence, created: self.created, sender, records: self.records })
    }
}

/// The limits [`check_invariants`] parses with besides the default ones: small enough that random
/// input reaches them (a fourth record, a value of 13 bytes).
pub const TIGHT_LIMITS: Limits = Limits { max_records: 3, max_field_len: 12 };

/// The longest [`Rejection::reason`], in bytes: a reason quotes at most a shortened piece of the
/// file, so a huge tag name cannot make a huge acknowledgement.
pub const MAX_REASON_LEN: usize = 600;

/// The longest record fault, in bytes (it names an element and a namespace, each shortened).
const MAX_FAULT_LEN: usize = 600;

/// Parses `bytes` with the default limits and with [`TIGHT_LIMITS`] and panics when an outcome
/// breaks what this module promises. The fuzz target (`fuzz/fuzz_targets/upload_parser.rs`) and
/// the replay of its corpus (`tests/app/fuzz_corpus.rs`) both call it:
///
/// - [`parse`] never panics, and gives the same outcome for the same bytes;
/// - an accepted file has 1 to `max_records` records numbered from 1, a Sender with a non-empty
///   odsCode, name and emergencyPhone, and every value kept is non-empty and at most
///   `max_field_len` bytes long (element text and Sender values also trimmed);
/// - a rejection says why, in at most [`MAX_REASON_LEN`] bytes;
/// - the limits decide nothing but themselves: the messageId read is the same under both; a file
///   accepted under the tight limits is accepted under the default ones, with the same header and
///   the same records, a value missing under the tight limits only when it is longer than they
///   allow; a file accepted under the default limits that fits the tight ones is accepted there.
///
/// Returns the outcome under the default limits.
pub fn check_invariants(bytes: &[u8]) -> Result<Upload, Rejection> {
    let default = Limits::default();
    let outcome = parse(bytes, &default);
    check_outcome(&outcome, &default);
    assert_eq!(parse(bytes, &default), outcome, "parsing the same bytes twice gave different outcomes");
    let tight = parse(bytes, &TIGHT_LIMITS);
    check_outcome(&tight, &TIGHT_LIMITS);
    let id = |o: &Result<Upload, Rejection>| match o {
        Ok(u) => Some(u.message_id),
        Err(r) => r.message_id,
    };
    assert_eq!(id(&tight), id(&outcome), "the limits changed the messageId read");
    match (&tight, &outcome) {
        (Ok(t), Ok(d)) => {
            assert_eq!((&t.sender, t.sequence, &t.created), (&d.sender, d.sequence, &d.created));
            assert_eq!(t.records.len(), d.records.len());
            for (t, d) in t.records.iter().zip(&d.records) {
                let kinds = |r: &RawRecord| r.items.iter().map(|i| i.kind).collect::<Vec<_>>();
                assert_eq!(kinds(t), kinds(d), "record {}: the limits changed the items read", d.index);
                assert!(t.faults.len() >= d.faults.len(), "record {}: tight limits lost a fault", d.index);
                let mut pairs = vec![
                    (&t.la_child_id, &d.la_child_id),
                    (&t.nhs_number, &d.nhs_number),
                    (&t.given_name, &d.given_name),
                    (&t.family_name, &d.family_name),
                    (&t.birth_date, &d.birth_date),
                ];
                for (ti, di) in t.items.iter().zip(&d.items) {
                    pairs.extend([(&ti.start, &di.start), (&ti.end, &di.end), (&ti.delete, &di.delete)]);
                }
                for (t_value, d_value) in pairs {
                    let dropped_as_too_long =
                        t_value.is_none() && d_value.as_ref().is_some_and(|v| v.len() > TIGHT_LIMITS.max_field_len);
                    assert!(
                        t_value == d_value || dropped_as_too_long,
                        "record {}: the limits changed a value ({t_value:?} against {d_value:?})",
                        d.index
                    );
                }
            }
        }
        (Ok(_), Err(d)) => panic!("accepted under the tight limits but refused under the default ones: {}", d.reason),
        (Err(t), Ok(d)) => {
            let fits = |v: &str| v.len() <= TIGHT_LIMITS.max_field_len;
            let s = &d.sender;
            let header_fits = [&s.ods_code, &s.name, &s.emergency_phone].into_iter().all(|v| fits(v))
                && s.office_hours_phone.as_deref().is_none_or(fits)
                && d.created.as_deref().is_none_or(fits);
            assert!(
                !(header_fits && d.records.len() <= TIGHT_LIMITS.max_records),
                "a file within the tight limits was refused under them: {}",
                t.reason
            );
        }
        (Err(_), Err(_)) => {}
    }
    outcome
}

/// What any one outcome under `limits` must satisfy (see [`check_invariants`]).
fn check_outcome(outcome: &Result<Upload, Rejection>, limits: &Limits) {
    let max = limits.max_field_len;
    let upload = match outcome {
        Err(r) => {
            assert!(!r.reason.trim().is_empty(), "a rejection without a reason");
            assert!(
                r.reason.len() <= MAX_REASON_LEN,
                "a rejection reason of {} bytes: {}",
                r.reason.len(),
                capped(r.reason.clone())
            );
            return;
        }
        Ok(upload) => upload,
    };
    let kept = |what: &str, v: &str| {
        assert!(!v.is_empty(), "{what} kept empty");
        assert!(v.len() <= max, "{what} kept with {} bytes, over the limit of {max}", v.len());
    };
    let trimmed = |what: &str, v: &str| {
        kept(what, v);
        assert_eq!(v, v.trim(), "{what} kept untrimmed");
    };
    let s = &upload.sender;
    trimmed("Sender odsCode", &s.ods_code);
    trimmed("Sender name", &s.name);
    trimmed("Sender emergencyPhone", &s.emergency_phone);
    if let Some(v) = &s.office_hours_phone {
        trimmed("Sender officeHoursPhone", v);
    }
    if let Some(v) = &upload.created {
        kept("created", v);
    }
    assert!(!upload.records.is_empty(), "accepted without a record");
    assert!(upload.records.len() <= limits.max_records, "accepted with {} records", upload.records.len());
    for (i, r) in upload.records.iter().enumerate() {
        assert_eq!(r.index, i + 1, "records are numbered from 1 in file order");
        if let Some(v) = &r.la_child_id {
            kept("laChildId", v);
        }
        for (what, v) in [
            ("NhsNumber", &r.nhs_number),
            ("GivenName", &r.given_name),
            ("FamilyName", &r.family_name),
            ("BirthDate", &r.birth_date),
        ] {
            if let Some(v) = v {
                trimmed(what, v);
            }
        }
        for item in &r.items {
            for v in [&item.start, &item.end, &item.delete].into_iter().flatten() {
                kept(item_name(item.kind), v);
            }
        }
        for fault in &r.faults {
            assert!(!fault.trim().is_empty(), "an empty record fault");
            assert!(fault.len() <= MAX_FAULT_LEN, "a record fault of {} bytes: {}", fault.len(), capped(fault.clone()));
        }
    }
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
