//! Every type on the COPY fast path (issue 12): arrays, composites, hstore and domains over them
//! are encoded as COPY text on the client. Proof: each loaded row equals what the server's own
//! `json_populate_record` (the previous, staged path) makes of the same fixture row, for values
//! full of quoting hazards; and bad values are still reported at their row and column.

use std::path::PathBuf;

use crate::support::{dbf, TestDb};

const SCHEMA: &str = r#"
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TYPE pair AS (a int, b text);
CREATE TYPE outer_t AS (p pair, tags text[], doc jsonb, ok boolean);
CREATE DOMAIN small_ints AS int[] CHECK (cardinality(VALUE) < 4);
CREATE TABLE t (
    id int PRIMARY KEY,
    ints int[],
    texts text[],
    grid int[][],
    bools boolean[],
    nums numeric[],
    stamps timestamp[],
    p pair,
    o outer_t,
    pairs pair[],
    h hstore,
    d small_ints
);
"#;

const ROWS: &[&str] = &[
    r#"{"id": 1, "ints": [1, 2, null], "texts": ["a,b", "q\"uote", "back\\slash", "", "NULL", "{x}", " sp ", "tab\there", "nl\nx"], "grid": [[1, 2], [3, 4]], "bools": [true, false, null], "nums": [1.5, -2, 1e3], "stamps": ["2024-01-02T03:04:05", "2024-01-02 03:04:05.5"], "p": {"a": 7, "b": "x(y),\"z\""}, "o": {"p": {"a": 1, "b": ""}, "tags": ["t1", null], "doc": {"k": [1, "two", null], "s": "q\"\\"}, "ok": true}, "pairs": [{"a": 1, "b": "one"}, null, {"a": null, "b": null}], "h": {"k1": "v1", "k\"2": "v\\2", "empty": "", "n": null, "a=>b": "c, d"}, "d": [1, 2, 3]}"#,
    r#"{"id": 2, "ints": [], "texts": [], "p": {"b": "only b", "extra": 1}, "o": {}, "pairs": [], "h": {}, "d": []}"#,
    r#"{"id": 3, "ints": "{4,5}", "texts": "{\"a b\",c}", "p": "(9,nine)", "h": "x=>1, y=>NULL", "d": "{7}"}"#,
    r#"{"id": 4, "ints": null, "texts": [null], "grid": null, "p": null, "o": null, "pairs": null, "h": null, "d": null}"#,
    r#"{"id": 5, "texts": ["ünïcødé ☃", "\\N", "\\."], "o": {"p": null, "tags": [], "doc": "a string", "ok": false}, "h": {"n": 1, "b": true}}"#,
    // Backslashes and quotes three layers deep, \u escapes (a surrogate pair), a control byte.
    r#"{"id": 6, "o": {"p": {"a": 2, "b": "back\\slash \"q\" \u00e9\ud83d\ude00"}, "tags": ["x\\y", "{\"}"], "doc": [], "ok": null}, "pairs": [{"b": "\\\"(,)"}], "texts": ["\u0001ctl\ttab"], "h": {"\\": "\"\\"}}"#,
];

fn fixture(rows: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.json");
    std::fs::write(&p, format!("{{\"t\": [\n{}\n]}}\n", rows.join(",\n"))).unwrap();
    (dir, p)
}

fn expected_equals_loaded(db: &TestDb, row: &str) {
    let id: serde_json::Value = serde_json::from_str(row).unwrap();
    let id = id["id"].as_i64().unwrap();
    let lit = row.replace('\'', "''");
    // json_populate_record hands an hstore column's JSON object to hstore's text input, so the
    // server's reading of `h` is built from its pairs (as the staged path did) and set with #=.
    let expected = format!(
        "(SELECT (json_populate_record(NULL::t, (j::jsonb - 'h')::json) #= hstore('h', (CASE json_typeof(j->'h') \
           WHEN 'object' THEN ARRAY(SELECT u.x FROM json_each_text(j->'h') WITH ORDINALITY AS e(k, v, n), \
                unnest(ARRAY[e.k, e.v]) WITH ORDINALITY AS u(x, m) ORDER BY e.n, u.m)::hstore \
           WHEN 'string' THEN (j->>'h')::hstore END)::text))::text FROM (SELECT '{lit}'::json AS j) s)"
    );
    let loaded = format!("(SELECT t::text FROM t WHERE id = {id})");
    let same = db.query_scalar(&format!("SELECT {loaded} IS NOT DISTINCT FROM {expected}"));
    assert_eq!(
        same.as_deref(),
        Some("true"),
        "row {id}: loaded {:?}, server reads the fixture as {:?}",
        db.query_scalar(&format!("SELECT {loaded}")),
        db.query_scalar(&format!("SELECT {expected}"))
    );
}

#[test]
fn structured_values_encoded_on_the_client_match_the_server_reading_of_the_json() {
    let db = TestDb::new("copy_types");
    db.sql(SCHEMA);
    let (_dir, f) = fixture(ROWS);
    let out = dbf(&db, &["load", f.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:#?}");
    for row in ROWS {
        expected_equals_loaded(&db, row);
    }
    // An upsert of the same rows (into a full table, the staged path) changes nothing.
    let again = dbf(&db, &["load", f.to_str().unwrap()]);
    assert_eq!(again.code, 0, "{again:#?}");
    assert!(
        again.stderr.contains("0 inserted, 0 updated, 6 unchanged"),
        "{}",
        again.stderr
    );
    // And a dump of them loads back to the same rows.
    let dumped = dbf(&db, &["dump", "--table", "t"]);
    assert_eq!(dumped.code, 0, "{dumped:#?}");
    let before = db.query_scalar("SELECT string_agg(t::text, '|' ORDER BY id) FROM t");
    let dir = tempfile::tempdir().unwrap();
    let dump_file = dir.path().join("dump.json");
    std::fs::write(&dump_file, &dumped.stdout).unwrap();
    db.sql("TRUNCATE t");
    let back = dbf(&db, &["load", dump_file.to_str().unwrap()]);
    assert_eq!(back.code, 0, "{back:#?}");
    assert_eq!(
        db.query_scalar("SELECT string_agg(t::text, '|' ORDER BY id) FROM t"),
        before
    );
}

#[test]
fn bad_structured_values_name_their_row_and_column() {
    let db = TestDb::new("copy_types_bad");
    db.sql(SCHEMA);
    // The domain's CHECK (the server's) and a JSON object where an array belongs (ours).
    for (row, column, what) in [
        (r#"{"id": 2, "d": [1, 2, 3, 4]}"#, "column d", "small_ints"),
        (
            r#"{"id": 2, "ints": {"a": 1}}"#,
            "column ints",
            "expected a JSON array",
        ),
        (
            r#"{"id": 2, "grid": [[1, 2], [3]]}"#,
            "column grid",
            "multidimensional",
        ),
    ] {
        let (_dir, f) = fixture(&[r#"{"id": 1}"#, row]);
        let out = dbf(&db, &["load", f.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{out:#?}");
        for part in ["t.json:3", "table t", "row 1 (id=2)", column, what] {
            assert!(
                out.stderr.contains(part),
                "missing {part:?} in {}",
                out.stderr
            );
        }
        assert_eq!(
            db.query_scalar("SELECT count(*) FROM t").as_deref(),
            Some("0")
        );
    }
}
