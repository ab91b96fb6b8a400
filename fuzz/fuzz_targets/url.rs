//! Database URLs: parsing, redaction and the connection target never panic, and a password put
//! into a URL or a key/value connection string never comes out of the redactor, the URL's Display
//! or an error message.
#![no_main]

use arbitrary::Arbitrary;
use dbfixtures::backend::connection::redact_url;
use dbfixtures::DatabaseUrl;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "Zq9SeCrEtPw";

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    form: u8,
    before: &'a str,
    after: &'a str,
}

fuzz_target!(|input: Input| {
    // Arbitrary text first: no panics anywhere.
    for raw in [input.before, input.after] {
        let _ = redact_url(raw);
        match DatabaseUrl::parse(raw) {
            Ok(u) => {
                let _ = u.to_string();
                let _ = u.target();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    // Around the secret, no character that moves it out of the password field (a '/' before
    // it puts it in the URL's path, a quote in a key/value string makes it part of another value):
    // there it is not a password to libpq either.
    let plain = |s: &str| {
        !s.contains("SeCrEt")
            && !s
                .chars()
                .any(|c| c.is_whitespace() || "/?#@\\'\"=&%".contains(c))
    };
    if !plain(input.before) || !plain(input.after) {
        return;
    }
    let (b, a) = (input.before, input.after);
    let raw = match input.form % 5 {
        0 => format!("postgres://{b}:{SECRET}@{a}"),
        1 => format!("postgresql://{b}@{a}?password={SECRET}"),
        2 => format!("host={b} password={SECRET} {a}"),
        3 => format!("host={b} password='{SECRET}' {a}"),
        _ => format!("postgres://{b}/{a}?x=1&password={SECRET}&y=2"),
    };
    let redacted = redact_url(&raw);
    assert!(
        !redacted.contains(SECRET),
        "{raw:?} redacted to {redacted:?}"
    );
    match DatabaseUrl::parse(&raw) {
        Ok(u) => {
            let shown = u.to_string();
            assert!(!shown.contains(SECRET), "{raw:?} shown as {shown:?}");
            let target = u.target();
            assert!(!target.contains(SECRET), "{raw:?} target {target:?}");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains(SECRET), "{raw:?} error {msg:?}");
        }
    }
});
