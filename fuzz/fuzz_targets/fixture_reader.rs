//! The streaming fixture reader on arbitrary bytes: it must never panic, never loop forever, and
//! every row it cuts out must be a complete JSON object that serde either parses or rejects with a
//! position inside the input.
#![no_main]

use dbfixtures::format::reader::{FixtureReader, RawRow};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A tiny buffer so table keys, strings and rows straddle refills of the BufRead.
    let input = std::io::BufReader::with_capacity(7, data);
    let mut reader = FixtureReader::new(input);
    let mut row = RawRow::default();
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    loop {
        match reader.next_table() {
            Ok(Some(_key)) => {}
            Ok(None) => break,
            Err(_) => return,
        }
        loop {
            match reader.next_row_into(&mut row) {
                Ok(true) => {
                    assert_eq!(row.bytes.first(), Some(&b'{'));
                    assert_eq!(row.bytes.last(), Some(&b'}'));
                    match row.fields() {
                        Ok(fields) => {
                            for (_, v) in fields {
                                let _ = v.get();
                            }
                        }
                        Err(e) => assert!(e.line >= 1 && e.line <= lines, "{e} outside input"),
                    }
                }
                Ok(false) => break,
                Err(_) => return,
            }
        }
    }
});
