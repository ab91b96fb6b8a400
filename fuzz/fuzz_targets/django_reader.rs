//! The streaming Django fixture reader (a JSON array cut element by element, or JSON Lines) on
//! arbitrary bytes: it must never panic or loop forever, and it either reads every object or
//! stops with an error naming a position.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the layout, so both readers see every input shape.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let jsonl = mode & 1 == 1;
    match dbfixtures::format::django::read_objects_for_fuzzing(rest, jsonl) {
        Ok(n) => {
            // An array of n objects has at least n "{"; so does JSON Lines.
            assert!(rest.iter().filter(|&&b| b == b'{').count() >= n);
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.starts_with("<fuzz>"), "error without the file name: {text}");
        }
    }
});
