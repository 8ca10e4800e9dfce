//! Property tests of the message codecs: whatever bytes arrive, the upload decoder answers with an
//! upload or a rejection (which the mailbox turns into a CPF03 acknowledgement) and never panics;
//! acknowledgements read back exactly as written. No database.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use cpis::domain::codes::{FileCode, RecordCode};
use cpis::messages::ack::{parse_ack, Acknowledgement, RecordResponse};
use cpis::messages::upload::{check_invariants, parse, Limits};

/// The contract's example file (messages.md, "01 Local Authority Upload"), as committed to the
/// fuzz corpus.
const EXAMPLE: &str = include_str!("../../fuzz/corpus/upload_parser/valid_contract_example.xml");

/// Snippets that exercise the decoder's corners when spliced into a file.
const SNIPPETS: &[&str] = &[
    "<",
    ">",
    "&",
    "&amp;",
    "&lol;",
    "&#0;",
    "&#x1F980;",
    "\"",
    "'",
    "/>",
    "</Record>",
    "<Record laChildId=\"X\">",
    "<Sender odsCode=\"E1\" name=\"N\" emergencyPhone=\"1\"/>",
    "<!DOCTYPE x [<!ENTITY a \"aaaa\">]>",
    "<![CDATA[ x ]]>",
    "<!-- c -->",
    "<?pi x?>",
    "<?xml version=\"1.0\"?>",
    "xmlns:c=\"urn:cpis:messages:1\"",
    "c:",
    "\u{feff}",
    "\u{1}",
    "\u{FFFF}",
    "é",
    " ",
    "\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Delete(usize, usize),
    InsertBytes(usize, Vec<u8>),
    InsertSnippet(usize, usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::InsertBytes(i, b)),
        4 => (any::<usize>(), 0..SNIPPETS.len()).prop_map(|(i, s)| Mutation::InsertSnippet(i, s)),
        1 => (any::<usize>(), 1usize..200).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Flip(i, b) if !bytes.is_empty() => {
            let i = i % bytes.len();
            bytes[i] = *b;
        }
        Mutation::Flip(..) => {}
        Mutation::Truncate(i) => bytes.truncate(at(*i, bytes.len())),
        Mutation::Delete(i, n) => {
            let start = at(*i, bytes.len());
            let end = (start + n).min(bytes.len());
            bytes.drain(start..end);
        }
        Mutation::InsertBytes(i, b) => {
            let i = at(*i, bytes.len());
            bytes.splice(i..i, b.iter().copied());
        }
        Mutation::InsertSnippet(i, s) => {
            let i = at(*i, bytes.len());
            bytes.splice(i..i, SNIPPETS[*s].bytes());
        }
        Mutation::Duplicate(i, n) => {
            let start = at(*i, bytes.len());
            let end = (start + n).min(bytes.len());
            let copy = bytes[start..end].to_vec();
            bytes.splice(end..end, copy);
        }
    }
}

/// Characters XML 1.0 allows (what an acknowledgement can carry unchanged).
fn xml_char() -> impl Strategy<Value = char> {
    prop_oneof![
        1 => prop::char::range('\u{20}', '\u{D7FF}'),
        1 => prop::char::range('\u{E000}', '\u{FFFD}'),
        1 => prop::char::range('\u{10000}', '\u{10FFFF}'),
        3 => prop::sample::select(vec!['&', '<', '>', '"', '\'', ';', '#', ' ', '\t', '\n', '\r', ']', '-', 'é', '日', '🦀']),
        4 => prop::char::range('a', 'z'),
    ]
}

fn text_of(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(xml_char(), len).prop_map(String::from_iter)
}

fn text() -> impl Strategy<Value = String> {
    text_of(0..40)
}

/// Optional values: an empty attribute reads as absent, so Some is never empty.
fn optional_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text_of(1..40))
}

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_102_444_800, prop_oneof![Just(0u32), 0u32..1_000_000_000])
        .prop_map(|(s, n)| Utc.timestamp_opt(s, n).single().expect("in range"))
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn record_response() -> impl Strategy<Value = RecordResponse> {
    (any::<usize>(), optional_text(), optional_text(), 0..RecordCode::ALL.len(), text(), optional_text()).prop_map(
        |(index, la_child_id, nhs_number, code, text, new_nhs_number)| RecordResponse {
            index,
            la_child_id,
            nhs_number,
            code: RecordCode::ALL[code],
            text,
            new_nhs_number,
        },
    )
}

fn acknowledgement() -> impl Strategy<Value = Acknowledgement> {
    (
        uuid(),
        proptest::option::of(uuid()),
        timestamp(),
        0..FileCode::ALL.len(),
        text(),
        (any::<usize>(), any::<usize>(), any::<usize>()),
        prop::collection::vec(record_response(), 0..6),
    )
        .prop_map(
            |(message_id, in_response_to, created, code, file_text, (received, accepted, rejected), records)| {
                Acknowledgement {
                    message_id,
                    in_response_to,
                    created,
                    file_code: FileCode::ALL[code],
                    file_text,
                    received,
                    accepted,
                    rejected,
                    records,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_parse_to_an_upload_or_a_rejection(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        // The library's checks (those the fuzz target makes): numbering, Sender, reasons,
        // determinism, and the limits deciding nothing but themselves.
        let outcome = check_invariants(&bytes);
        prop_assert!(outcome.is_err(), "random bytes are not an upload");
    }

    #[test]
    fn mutated_valid_files_never_panic(mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut bytes = EXAMPLE.as_bytes().to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let _ = check_invariants(&bytes);
        // Small limits take the limit paths too.
        let tight = Limits { max_records: 1, max_field_len: 8 };
        let _ = parse(&bytes, &tight);
    }

    #[test]
    fn acknowledgements_round_trip(ack in acknowledgement()) {
        let xml = ack.to_xml();
        prop_assert_eq!(parse_ack(&xml), Ok(ack));
    }
}

#[test]
fn the_example_file_is_an_upload() {
    let u = parse(EXAMPLE.as_bytes(), &Limits::default()).expect("the contract's example parses");
    assert_eq!(u.records.len(), 1);
    assert_eq!(u.records[0].items.len(), 3);
}
