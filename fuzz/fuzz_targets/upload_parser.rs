//! Fuzz target: message 01's decoder, fed arbitrary bytes. The checks are the library's own
//! (`cpis::messages::upload::check_invariants`), which the ordinary test
//! `tests/app/fuzz_corpus.rs` also runs over the committed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cpis::messages::upload::check_invariants(data);
});
