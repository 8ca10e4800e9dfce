//! Unit tests of the message 01 decoder (`upload.rs`).

use super::*;

const ID: &str = "0b7c1f0e-8d1a-4a51-9a6e-3c2f5a1d9e40";

/// The contract's example file (messages.md, "01 Local Authority Upload").
pub(crate) const EXAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<LAUpload xmlns="urn:cpis:messages:1" messageId="0b7c1f0e-8d1a-4a51-9a6e-3c2f5a1d9e40"
          sequence="17" created="2026-11-22T09:15:00Z">
  <Sender odsCode="E10000016" name="Kent County Council"
          emergencyPhone="01632 960001" officeHoursPhone="01632 960002"/>
  <!-- a 17-year-old with her own plans and an unborn child protection plan -->
  <Record laChildId="KCC-000123">
    <NhsNumber>9990000018</NhsNumber>
    <GivenName>Amelia</GivenName>
    <FamilyName>Hart</FamilyName>
    <BirthDate>2009-01-31</BirthDate>
    <ChildProtectionPlan start="2025-03-01"/>
    <LookedAfterChild start="2024-06-10" end="2025-06-10"/>
    <UnbornChildProtectionPlan start="2026-09-01" end="2027-01-15" delete="2027-01-20"/>
  </Record>
</LAUpload>
"#;

const SENDER: &str = r#"<Sender odsCode="E10000016" name="Kent County Council" emergencyPhone="01632 960001"/>"#;

fn id() -> Uuid {
    Uuid::parse_str(ID).unwrap()
}

fn ok(xml: &str) -> Upload {
    parse(xml.as_bytes(), &Limits::default()).unwrap_or_else(|r| panic!("refused: {}", r.reason))
}

fn refused(xml: impl AsRef<[u8]>) -> Rejection {
    match parse(xml.as_ref(), &Limits::default()) {
        Ok(u) => panic!("accepted: {u:?}"),
        Err(r) => {
            assert!(!r.reason.is_empty());
            r
        }
    }
}

/// A file with the given root attributes, sender and body.
fn file(root_attrs: &str, body: &str) -> String {
    format!("<LAUpload xmlns=\"urn:cpis:messages:1\" {root_attrs}>{body}</LAUpload>")
}

fn good_root() -> String {
    format!("messageId=\"{ID}\" sequence=\"5\"")
}

/// A file with one record whose content is `record` (inside `<Record laChildId="C1">`).
fn with_record(record: &str) -> String {
    file(&good_root(), &format!("{SENDER}<Record laChildId=\"C1\">{record}</Record>"))
}

fn one_record(record: &str) -> RawRecord {
    let u = ok(&with_record(record));
    assert_eq!(u.records.len(), 1);
    u.records.into_iter().next().unwrap()
}

#[test]
fn the_contract_example_parses() {
    let u = ok(EXAMPLE);
    assert_eq!(u.message_id, id());
    assert_eq!(u.sequence, 17);
    assert_eq!(u.created.as_deref(), Some("2026-11-22T09:15:00Z"));
    assert_eq!(
        u.sender,
        Sender {
            ods_code: "E10000016".into(),
            name: "Kent County Council".into(),
            emergency_phone: "01632 960001".into(),
            office_hours_phone: Some("01632 960002".into()),
        }
    );
    assert_eq!(
        u.records,
        vec![RawRecord {
            index: 1,
            la_child_id: Some("KCC-000123".into()),
            nhs_number: Some("9990000018".into()),
            given_name: Some("Amelia".into()),
            family_name: Some("Hart".into()),
            birth_date: Some("2009-01-31".into()),
            items: vec![
                RawItem {
                    kind: ItemKind::ChildProtectionPlan,
                    start: Some("2025-03-01".into()),
                    end: None,
                    delete: None
                },
                RawItem {
                    kind: ItemKind::LookedAfterChild,
                    start: Some("2024-06-10".into()),
                    end: Some("2025-06-10".into()),
                    delete: None
                },
                RawItem {
                    kind: ItemKind::UnbornChildProtectionPlan,
                    start: Some("2026-09-01".into()),
                    end: Some("2027-01-15".into()),
                    delete: Some("2027-01-20".into())
                },
            ],
            faults: vec![],
        }]
    );
}

#[test]
fn a_utf8_bom_and_no_declaration_are_fine() {
    let body = EXAMPLE.split_once("?>\n").unwrap().1;
    assert_eq!(ok(body).records.len(), 1);
    assert_eq!(ok(&format!("\u{feff}{EXAMPLE}")).records.len(), 1);
}

#[test]
fn namespace_prefixes_are_accepted() {
    let xml = format!(
        r#"<c:LAUpload xmlns:c="urn:cpis:messages:1" messageId="{ID}" sequence="1">
             <c:Sender odsCode="E1" name="N" emergencyPhone="1"/>
             <c:Record laChildId="A"><c:NhsNumber>9990000018</c:NhsNumber><c:ChildProtectionPlan start="2025-01-01"/></c:Record>
           </c:LAUpload>"#
    );
    let u = ok(&xml);
    assert_eq!(u.records[0].nhs_number.as_deref(), Some("9990000018"));
    assert_eq!(u.records[0].items.len(), 1);
    assert!(u.records[0].faults.is_empty());
}

#[test]
fn references_are_unescaped_and_text_trimmed() {
    let xml = file(
        &good_root(),
        r#"<Sender odsCode="E1" name="Brighton &amp; Hove &#x2014; &quot;BHCC&quot;" emergencyPhone=" 01632 960001 "/>
               <Record laChildId="A&lt;1&gt;&#39;">
                 <GivenName>
                    O&apos;Neil &lt;Jr&gt; &#233;
                 </GivenName>
                 <FamilyName><![CDATA[Smith & <Sons>]]></FamilyName>
               </Record>"#,
    );
    let u = ok(&xml);
    assert_eq!(u.sender.name, "Brighton & Hove \u{2014} \"BHCC\"");
    assert_eq!(u.sender.emergency_phone, "01632 960001");
    let r = &u.records[0];
    assert_eq!(r.la_child_id.as_deref(), Some("A<1>'"));
    assert_eq!(r.given_name.as_deref(), Some("O'Neil <Jr> \u{e9}"));
    assert_eq!(r.family_name.as_deref(), Some("Smith & <Sons>"));
}

#[test]
fn empty_office_hours_phone_is_absent() {
    let xml = file(
        &good_root(),
        r#"<Sender odsCode="E1" name="N" emergencyPhone="1" officeHoursPhone=""/><Record laChildId="A"/>"#,
    );
    assert_eq!(ok(&xml).sender.office_hours_phone, None);
    let xml =
        file(&good_root(), r#"<Sender odsCode="E1" name="N" emergencyPhone="1"></Sender><Record laChildId="A"/>"#);
    assert_eq!(ok(&xml).sender.office_hours_phone, None);
}

#[test]
fn values_are_not_validated_here() {
    let r = one_record(
        r#"<NhsNumber>12-34</NhsNumber><BirthDate>31/01/2009</BirthDate>
           <ChildProtectionPlan end="yesterday"/><LookedAfterChild start=""/>"#,
    );
    assert_eq!(r.nhs_number.as_deref(), Some("12-34"));
    assert_eq!(r.birth_date.as_deref(), Some("31/01/2009"));
    assert_eq!(r.items[0].start, None);
    assert_eq!(r.items[0].end.as_deref(), Some("yesterday"));
    assert_eq!(r.items[1].start, None, "an empty attribute counts as absent");
    assert!(r.faults.is_empty());
}

#[test]
fn record_faults_do_not_reject_the_file() {
    let r = one_record(
        r#"<NhsNumber>9990000018</NhsNumber><NhsNumber>9990000026</NhsNumber>
           <Foo>bar</Foo><x:GivenName xmlns:x="urn:other">A</x:GivenName>
           <ChildProtectionPlan start="2025-01-01"/><ChildProtectionPlan start="2025-02-01"/>"#,
    );
    assert_eq!(r.nhs_number.as_deref(), Some("9990000018"), "the first value is kept");
    assert_eq!(r.given_name, None);
    assert_eq!(r.items.len(), 2, "both items are kept for the record checks");
    assert_eq!(
        r.faults,
        vec![
            "NhsNumber is given twice".to_string(),
            "unexpected element Foo".to_string(),
            "unexpected element x:GivenName (in namespace urn:other)".to_string(),
        ]
    );
    // An element of the right name in no namespace is unexpected too.
    let r = one_record(r#"<NhsNumber xmlns="">9990000018</NhsNumber>"#);
    assert_eq!(r.nhs_number, None);
    assert_eq!(r.faults, vec!["unexpected element NhsNumber".to_string()]);
    // Nested content and text.
    let r = one_record(r#"stray<NhsNumber>99<b>1</b>9</NhsNumber><LookedAfterChild start="x">t</LookedAfterChild>"#);
    assert_eq!(r.nhs_number.as_deref(), Some("999"));
    assert_eq!(r.faults, vec!["unexpected text inside Record".to_string(), "unexpected element b".to_string()]);
}

#[test]
fn a_huge_value_becomes_a_fault() {
    let big = "A".repeat(1 << 20);
    let xml = file(
        &good_root(),
        &format!(
            "{SENDER}<Record laChildId=\"{big}\"><GivenName>{big}</GivenName><FamilyName>  {}  </FamilyName>\
             <ChildProtectionPlan start=\"{big}\"/></Record>",
            "B".repeat(1000)
        ),
    );
    let r = &ok(&xml).records[0];
    assert_eq!(r.la_child_id, None);
    assert_eq!(r.given_name, None);
    assert_eq!(r.family_name.as_deref().map(str::len), Some(1000), "exactly the limit is fine");
    assert_eq!(r.items[0].start, None);
    assert_eq!(
        r.faults,
        vec![
            "laChildId is longer than 1000 characters".to_string(),
            "GivenName is longer than 1000 characters".to_string(),
            "ChildProtectionPlan start is longer than 1000 characters".to_string(),
        ]
    );
}

#[test]
fn ten_thousand_records_with_one_bad_one() {
    let mut body = String::from(SENDER);
    for i in 1..=10_000 {
        if i == 5_000 {
            body.push_str(
                "<Record laChildId=\"bad\"><Bogus/><NhsNumber>x</NhsNumber><NhsNumber>y</NhsNumber></Record>",
            );
        } else {
            body.push_str(&format!(
                "<Record laChildId=\"C{i}\"><NhsNumber>9990000018</NhsNumber><ChildProtectionPlan start=\"2025-01-01\"/></Record>\n"
            ));
        }
    }
    let u = ok(&file(&good_root(), &body));
    assert_eq!(u.records.len(), 10_000);
    assert!(u.records.iter().enumerate().all(|(i, r)| r.index == i + 1));
    assert_eq!(u.records[4_999].faults.len(), 2);
    assert_eq!(u.records.iter().filter(|r| !r.faults.is_empty()).count(), 1);
    assert_eq!(u.records[9_999].la_child_id.as_deref(), Some("C10000"));
}

fn assert_refused(xml: impl AsRef<[u8]>, with_id: bool, words: &str) {
    let r = refused(xml);
    assert_eq!(r.message_id, with_id.then(id), "{}", r.reason);
    assert!(r.reason.contains(words), "{:?} does not contain {words:?}", r.reason);
}

#[test]
fn malformed_xml_is_refused() {
    let good = with_record("<NhsNumber>1</NhsNumber>");
    assert_refused("", false, "no XML element");
    assert_refused("   ", false, "no XML element");
    assert_refused("not xml at all", false, "outside LAUpload");
    assert_refused(&good[..good.len() - 5], true, "not well-formed");
    assert_refused(&good[..good.len() - 11], true, "cut short");
    assert_refused(good.replace("</NhsNumber>", "</GivenName>"), true, "not well-formed");
    assert_refused(format!("{good}<LAUpload/>"), true, "after the end of LAUpload");
    assert_refused(format!("{good}garbage"), true, "outside LAUpload");
    assert_refused(format!("{good}&amp;"), true, "outside LAUpload");
    assert_eq!(ok(&format!("<!-- c -->\n{good}\n<!-- c -->\n")).records.len(), 1);
    assert_refused(good.replace("laChildId=\"C1\"", "laChildId=\"C1\" laChildId=\"C2\""), true, "not well-formed");
    assert_refused(good.replace("laChildId=\"C1\"", "laChildId=C1"), true, "not well-formed");
    assert_refused(good.replace("laChildId=\"C1\"", "laChildId=\"C<1\""), true, "<");
    assert_refused(good.replace("laChildId=\"C1\"", "laChildId=\"C&1\""), true, "&");
    assert_refused(good.replace("<NhsNumber>1", "<NhsNumber>1 & 2"), true, "not well-formed");
    assert_refused(good.replace("<NhsNumber>1", "<NhsNumber>&#0;"), true, "not a reference to a character");
    assert_refused(good.replace("<NhsNumber>1", "<NhsNumber>&#xD800;"), true, "not a reference to a character");
    assert_refused(good.replace("<NhsNumber>1", "<NhsNumber>\u{1}"), true, "U+0001");
    assert_refused(good.replace("<NhsNumber>1", "<NhsNumber>\u{FFFF}"), true, "U+FFFF");
    assert_refused(
        good.replace("<NhsNumber>", "<x:NhsNumber>").replace("</NhsNumber>", "</x:NhsNumber>"),
        true,
        "prefix",
    );
    assert_refused(format!("  <?xml version=\"1.0\"?>{good}"), false, "very start");
    assert_refused(format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{good}"), false, "UTF-8");
    assert_refused(good.replace("<Record", "<!-- a -- b --><Record"), true, "not well-formed");
}

#[test]
fn invalid_utf8_is_refused_with_the_id_when_readable() {
    let mut bytes = with_record("<GivenName>Zo\u{eb}</GivenName>").into_bytes();
    let at = bytes.windows(2).position(|w| w == "\u{eb}".as_bytes()).unwrap();
    bytes[at] = 0xFF;
    assert_refused(&bytes, true, "UTF-8");
    assert_refused([0xC3u8, 0x28], false, "UTF-8");
    let mut early = EXAMPLE.as_bytes().to_vec();
    early[2] = 0xFE;
    assert_refused(&early, false, "UTF-8");
}

#[test]
fn a_dtd_is_refused_and_entities_never_expanded() {
    let bomb = format!(
        r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<LAUpload xmlns="urn:cpis:messages:1" messageId="{ID}" sequence="1">{SENDER}
  <Record laChildId="&lol9;"><GivenName>&lol9;</GivenName></Record>
</LAUpload>"#
    );
    // Refused at the DOCTYPE, before any entity is read, let alone expanded.
    assert_refused(&bomb, false, "DOCTYPE");
    // The same references without the DTD are unknown entities.
    let no_dtd = bomb.split_once("]>\n").unwrap().1;
    assert_refused(no_dtd, true, "&lol9;");
    assert_refused(with_record("<GivenName>&lol9;</GivenName>"), true, "&lol9;");
    assert_refused(with_record("<GivenName>&nbsp;</GivenName>"), true, "&nbsp;");
    // A DOCTYPE without entities, and one after the root, are refused too.
    assert_refused(format!("<!DOCTYPE LAUpload>{}", with_record("")), false, "DOCTYPE");
    assert_refused(format!("{}<!DOCTYPE LAUpload>", with_record("")), true, "");
}

#[test]
fn the_wrong_root_or_namespace_is_refused() {
    let body = format!("{SENDER}<Record laChildId=\"A\"/>");
    assert_refused(format!("<LAUpload messageId=\"{ID}\" sequence=\"1\">{body}</LAUpload>"), true, "no namespace");
    assert_refused(
        format!("<LAUpload xmlns=\"urn:cpis:messages:2\" messageId=\"{ID}\" sequence=\"1\">{body}</LAUpload>"),
        true,
        "urn:cpis:messages:2",
    );
    assert_refused(
        format!("<LAAcknowledgement xmlns=\"urn:cpis:messages:1\" messageId=\"{ID}\">{body}</LAAcknowledgement>"),
        true,
        "root element is LAAcknowledgement",
    );
    assert_refused(format!("<Upload sequence=\"1\">{body}</Upload>"), false, "root element is Upload");
}

#[test]
fn a_bad_message_id_is_refused_without_an_id() {
    let body = format!("{SENDER}<Record laChildId=\"A\"/>");
    assert_refused(file("sequence=\"1\"", &body), false, "no messageId");
    assert_refused(file("messageId=\"\" sequence=\"1\"", &body), false, "not a UUID");
    assert_refused(file("messageId=\"file-17\" sequence=\"1\"", &body), false, "\"file-17\" is not a UUID");
    assert_refused(file(&format!("messageId=\"{ID}x\" sequence=\"1\""), &body), false, "not a UUID");
}

#[test]
fn a_bad_sequence_is_refused_with_the_id() {
    let body = format!("{SENDER}<Record laChildId=\"A\"/>");
    let root = |seq: &str| format!("messageId=\"{ID}\"{seq}");
    assert_refused(file(&root(""), &body), true, "no sequence");
    for bad in ["", "-1", "+1", "1.5", " 1", "x", "1234567890123456789", "１"] {
        assert_refused(file(&root(&format!(" sequence=\"{bad}\"")), &body), true, "not a whole number");
    }
    assert_eq!(ok(&file(&root(" sequence=\"123456789012345678\""), &body)).sequence, 123_456_789_012_345_678);
    assert_eq!(ok(&file(&root(" sequence=\"007\""), &body)).sequence, 7);
}

#[test]
fn sender_problems_are_refused_with_the_id() {
    let rec = "<Record laChildId=\"A\"/>";
    assert_refused(file(&good_root(), rec), true, "no Sender");
    assert_refused(file(&good_root(), &format!("{SENDER}{SENDER}{rec}")), true, "second Sender");
    for attr in ["odsCode", "name", "emergencyPhone"] {
        let without = SENDER.replace(&format!(" {attr}="), " other=");
        assert_refused(file(&good_root(), &format!("{without}{rec}")), true, attr);
        let empty = SENDER.replace(&format!(" {attr}=\""), &format!(" {attr}=\"  \" x=\""));
        assert_refused(file(&good_root(), &format!("{empty}{rec}")), true, attr);
    }
    let other_ns = SENDER.replace("<Sender", "<Sender xmlns=\"urn:other\"");
    assert_refused(file(&good_root(), &format!("{other_ns}{rec}")), true, "unexpected element Sender");
    assert_refused(
        file(&good_root(), &format!("<Sender odsCode=\"E1\" name=\"N\" emergencyPhone=\"1\"><x/></Sender>{rec}")),
        true,
        "inside Sender",
    );
}

#[test]
fn records_are_required_and_limited() {
    assert_refused(file(&good_root(), SENDER), true, "no Record");
    let xml = with_record("");
    let limits = Limits { max_records: 2, ..Limits::default() };
    let three = xml.replace("<Record", "<Record/><Record/><Record");
    let r = parse(three.as_bytes(), &limits).unwrap_err();
    assert_eq!(r.message_id, Some(id()));
    assert!(r.reason.contains("more than 2 records"), "{}", r.reason);
    let two = xml.replace("<Record", "<Record/><Record");
    assert_eq!(parse(two.as_bytes(), &limits).unwrap().records.len(), 2);
    // Records need not follow the Sender.
    let after = file(&good_root(), &format!("<Record laChildId=\"A\"/>{SENDER}"));
    assert_eq!(ok(&after).records.len(), 1);
    // An unexpected element directly inside LAUpload refuses the file.
    assert_refused(file(&good_root(), &format!("{SENDER}<Records/>")), true, "unexpected element Records");
    assert_refused(file(&good_root(), &format!("{SENDER}text<Record/>")), true, "unexpected text inside LAUpload");
}

#[test]
fn comments_and_processing_instructions_are_ignored() {
    let xml = EXAMPLE
        .replace("<NhsNumber>", "<NhsNumber><!-- n --><?pi x?>")
        .replace("</Record>", "<!-- end --></Record><?app ok?>");
    assert_eq!(ok(&xml).records[0].nhs_number.as_deref(), Some("9990000018"));
}

#[test]
fn long_header_values_are_refused() {
    let long = "x".repeat(1001);
    let s = SENDER.replace("Kent County Council", &long);
    assert_refused(file(&good_root(), &format!("{s}<Record/>")), true, "longer than 1000");
}
