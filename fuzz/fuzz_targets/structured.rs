//! Arrays, composites and hstore encoded for COPY (the load's client-side encoder) on arbitrary
//! JSON: never a panic, and the field it writes is one COPY text field (no raw tab, newline or
//! carriage return, no lone trailing backslash), whatever the value and however deep the
//! quoting layers go.
#![no_main]

use dbfixtures::format::copy_structured::{push_structured, Scalar, Shape};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fn shapes() -> Vec<Shape> {
    let text = Shape::Scalar(Scalar::Other);
    let arr = |elem: Shape| Shape::Array {
        elem: Box::new(elem),
        delim: b',',
    };
    let pair = Shape::Composite(vec![
        ("a".into(), text.clone()),
        ("b".into(), Shape::Scalar(Scalar::Boolean)),
    ]);
    vec![
        arr(text.clone()),
        arr(Shape::Scalar(Scalar::Boolean)),
        arr(pair.clone()),
        arr(Shape::Hstore),
        Shape::Hstore,
        pair.clone(),
        Shape::Composite(vec![
            ("p".into(), pair),
            ("tags".into(), arr(text)),
            ("doc".into(), Shape::Scalar(Scalar::Json)),
            ("h".into(), Shape::Hstore),
        ]),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, json)) = data.split_first() else {
        return;
    };
    let Ok(raw) = serde_json::from_slice::<&RawValue>(json) else {
        return;
    };
    let shapes = shapes();
    let shape = &shapes[pick as usize % shapes.len()];
    let mut out = Vec::new();
    if push_structured(&mut out, shape, raw).is_ok() {
        assert!(!out.iter().any(|b| matches!(b, b'\t' | b'\n' | b'\r')));
        let trailing = out.iter().rev().take_while(|&&b| b == b'\\').count();
        assert!(trailing % 2 == 0 || out == b"\\N", "{:?}", String::from_utf8_lossy(&out));
    }
});
