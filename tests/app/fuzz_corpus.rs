//! The fuzz corpus replayed as an ordinary test: every file under fuzz/corpus/upload_parser/ (the
//! committed seeds and crashes found by `./scripts/fuzz`) and fuzz/artifacts/ (what a local run left
//! behind, when present) goes through the same checks as the fuzz target,
//! `cpis::messages::upload::check_invariants`. No database, no cargo-fuzz needed.

use std::path::{Path, PathBuf};

use cpis::messages::upload::{check_invariants, parse, Limits, MAX_REASON_LEN};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every regular file under `dir`, recursively, sorted; none when `dir` does not exist.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.expect("a readable directory entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Runs the checks on one file, naming the file when they fail.
fn replay(path: &Path) -> Result<cpis::messages::upload::Upload, cpis::messages::upload::Rejection> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match std::panic::catch_unwind(|| check_invariants(&bytes)) {
        Ok(outcome) => outcome,
        Err(cause) => {
            let why = cause
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| cause.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            panic!("{}: {why}", path.display())
        }
    }
}

#[test]
fn the_committed_corpus_passes_the_fuzz_checks() {
    let corpus = files_under(&root().join("corpus/upload_parser"));
    assert!(corpus.len() >= 20, "the seed corpus is missing: {} files", corpus.len());
    let total: u64 = corpus.iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum();
    assert!(total < 200 * 1024, "keep the committed corpus small: {total} bytes");
    let (mut accepted, mut refused) = (0, 0);
    for path in &corpus {
        match replay(path) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    // The seeds cover both outcomes; files named valid_* are accepted, bad_* refused.
    assert!(accepted > 0 && refused > 0, "{accepted} accepted, {refused} refused");
    for path in &corpus {
        let name = path.file_name().unwrap().to_string_lossy();
        let outcome = parse(&std::fs::read(path).unwrap(), &Limits::default());
        if name.starts_with("valid_") {
            assert!(outcome.is_ok(), "{name} refused: {:?}", outcome.err().map(|r| r.reason));
        } else if name.starts_with("bad_") {
            assert!(outcome.is_err(), "{name} accepted");
        }
    }
}

#[test]
fn fuzz_artifacts_left_by_a_local_run_pass_the_checks() {
    // Empty unless ./scripts/fuzz found something on this machine: then this test fails until the
    // parser is fixed (and the input copied into the corpus).
    for path in files_under(&root().join("artifacts")) {
        let _ = replay(&path);
    }
}

#[test]
fn a_huge_tag_name_gives_a_short_reason() {
    // Found while writing the fuzz checks: quick-xml quotes both names of a mismatched end tag.
    let name = "N".repeat(100_000);
    let xml = format!(
        "<LAUpload xmlns=\"urn:cpis:messages:1\" messageId=\"0b7c1f0e-8d1a-4a51-9a6e-3c2f5a1d9e40\" \
         sequence=\"1\"><Record><{name}>x</{name}x></Record></LAUpload>"
    );
    let r = check_invariants(xml.as_bytes()).unwrap_err();
    assert!(r.reason.len() <= MAX_REASON_LEN, "{}", r.reason.len());
    assert!(r.reason.contains("not well-formed"), "{}", r.reason);
}
