//! `load` (issue 4): fixture files into a real PostgreSQL in one transaction, in foreign-key
//! order, in each mode, always ending with sequence realignment; errors that name where the bad
//! row is and leave the database exactly as it was (sequences included); fault injection (bad
//! last row of a large file, truncated JSON, hostile names, SIGKILL mid-load); round trips
//! through `dump`; the library API inside a caller's transaction.
//!
//! "Unchanged" is always checked with [`snapshot`]: every table's row count and checksum plus
//! every sequence's `last_value, is_called`, taken before and after.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dbfixtures::backend::TxMode;
use dbfixtures::load::{load_paths, LoadOptions, Mode};
use dbfixtures::{Error, NoProgress};

use crate::support::{cmd, db_cmd, dbf, ident, AppRole, Out, TestDb};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Runs `dbfixtures ARGS --database-url URL` against `db`.
fn dbf_stdin(db: &TestDb, args: &[&str], stdin: Option<Vec<u8>>) -> Out {
    let mut c = db_cmd(db, args);
    if let Some(input) = stdin {
        c.write_stdin(input);
    }
    let out = c.output().expect("run dbfixtures");
    Out::from(out)
}

/// `load ARGS`, which must succeed; returns its output.
fn load(db: &TestDb, args: &[&str]) -> Out {
    let mut all = vec!["load"];
    all.extend_from_slice(args);
    let out = dbf(db, &all);
    assert_eq!(out.code, 0, "load {args:?} failed: {out:#?}");
    out
}

/// `load ARGS`, which must fail with exit status 2; returns stderr.
fn load_fails(db: &TestDb, args: &[&str]) -> String {
    let mut all = vec!["load"];
    all.extend_from_slice(args);
    let out = dbf(db, &all);
    assert_eq!(out.code, 2, "load {args:?} should have failed: {out:#?}");
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    out.stderr
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Writes `content` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&p, content).unwrap();
    p
}

fn demo_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo.json")
}

fn demo_db(name: &str) -> TestDb {
    let db = TestDb::new(name);
    db.apply_demo_schema();
    db
}

fn scalar(db: &TestDb, sql: &str) -> String {
    db.query_scalar(sql)
        .unwrap_or_else(|| panic!("no value from {sql}"))
}

fn int(db: &TestDb, sql: &str) -> i64 {
    let v = scalar(db, sql);
    v.parse()
        .unwrap_or_else(|e| panic!("{sql} returned {v:?}: {e}"))
}

/// A checksum of a table's whole contents, as the issue suggests.
fn checksum(db: &TestDb, table: &str) -> String {
    db.query_scalar(&format!(
        "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') \
         FROM {table} t"
    ))
    .unwrap()
}

/// Every user table (row count + checksum) and every sequence (`last_value/is_called`).
fn snapshot(db: &TestDb) -> BTreeMap<String, String> {
    let names = |sql: &str| -> Vec<String> {
        db.query_scalar(sql)
            .map(|j| serde_json::from_str(&j).expect("JSON list"))
            .unwrap_or_default()
    };
    let mut out = BTreeMap::new();
    for t in names(
        "SELECT json_agg(format('%I.%I', schemaname, tablename) ORDER BY 1)::text \
         FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    ) {
        let sum = checksum(db, &t);
        out.insert(format!("table {t}"), sum);
    }
    for s in names(
        "SELECT json_agg(format('%I.%I', schemaname, sequencename) ORDER BY 1)::text \
         FROM pg_sequences",
    ) {
        let v = scalar(
            db,
            &format!("SELECT last_value || '/' || is_called FROM {s}"),
        );
        out.insert(format!("sequence {s}"), v);
    }
    out
}

/// The application-style check: an INSERT that omits the id succeeds in every demo table, and
/// gets the id just past the largest loaded one.
fn demo_inserts_succeed(db: &TestDb) {
    let max = |t: &str| int(db, &format!("SELECT coalesce(max(id), 0) FROM {t}"));
    let (u, c, p, j, pay) = (
        max("users"),
        max("clients"),
        max("properties"),
        max("cleaning_jobs"),
        max("payments"),
    );
    let user = int(
        db,
        "INSERT INTO users (email, full_name) VALUES ('new-user@example.com', 'New') RETURNING id",
    );
    assert_eq!(user, u + 1);
    let client = int(
        db,
        &format!(
            "INSERT INTO clients (name, account_manager_id) VALUES ('New', {user}) RETURNING id"
        ),
    );
    assert_eq!(client, c + 1);
    let property = int(
        db,
        &format!("INSERT INTO properties (client_id, address) VALUES ({client}, 'x') RETURNING id"),
    );
    assert_eq!(property, p + 1);
    let job = int(
        db,
        &format!(
            "INSERT INTO cleaning_jobs (property_id, scheduled_for, price) \
             VALUES ({property}, now(), 1) RETURNING id"
        ),
    );
    assert_eq!(job, j + 1);
    let payment = int(
        db,
        &format!(
            "INSERT INTO payments (job_id, amount, method) VALUES ({job}, 1, 'cash') RETURNING id"
        ),
    );
    assert_eq!(payment, pay + 1);
}

fn assert_contains(haystack: &str, needles: &[&str]) {
    for n in needles {
        assert!(haystack.contains(n), "expected {n:?} in:\n{haystack}");
    }
}

// ---------------------------------------------------------------------------------------------
// Basics: the demo fixture, summary, realignment

#[test]
fn demo_fixture_loads_reports_and_realigns_every_sequence() {
    let db = demo_db("demo_basic");
    let out = load(&db, &[path_str(&demo_fixture())]);
    assert_contains(
        &out.stderr,
        &[
            "Loaded 44 rows into 5 tables from 1 file (44 inserted, 0 updated, 0 unchanged); \
             realigned 5 sequences",
            "users_id_seq: 1 → 5",
            "cleaning_jobs_id_seq: 1 → 16",
        ],
    );
    assert_eq!(out.stdout, "", "data only on stdout, and load writes none");
    for (t, n) in [
        ("users", 4),
        ("clients", 6),
        ("properties", 9),
        ("cleaning_jobs", 15),
        ("payments", 10),
    ] {
        assert_eq!(int(&db, &format!("SELECT count(*) FROM {t}")), n, "{t}");
    }
    // Values arrive exactly.
    assert_eq!(
        scalar(&db, "SELECT notes FROM clients WHERE id = 3"),
        "Gate code is \"4521\\B\" (ask before using)"
    );
    assert_eq!(
        scalar(&db, "SELECT details::text FROM properties WHERE id = 6"),
        r#"{"kind": "office", "rooms": 15, "access": {"desk": "lobby", "badge": true}}"#
    );
    assert_eq!(
        scalar(&db, "SELECT price::text FROM cleaning_jobs WHERE id = 2"),
        "320.50"
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT created_at = '2024-02-01T14:45:30+00:00' FROM users WHERE id = 4"
        ),
        "true"
    );
    assert_eq!(
        db.query_scalar("SELECT paid_at FROM payments WHERE id = 5"),
        None
    );
    demo_inserts_succeed(&db);
}

#[test]
fn quiet_load_prints_nothing() {
    let db = demo_db("quiet_load");
    let out = load(&db, &["--quiet", path_str(&demo_fixture())]);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
    assert_eq!(int(&db, "SELECT count(*) FROM payments"), 10);
}

// ---------------------------------------------------------------------------------------------
// Inputs: files, directories, stdin, gzip, all in one transaction

/// The demo fixture split into one file per table.
fn split_demo(dir: &Path, names: &[(&str, &str)]) -> Vec<PathBuf> {
    let demo: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&fs::read_to_string(demo_fixture()).unwrap()).unwrap();
    names
        .iter()
        .map(|(table, file)| {
            let mut one = serde_json::Map::new();
            one.insert(table.to_string(), demo[*table].clone());
            write(
                dir,
                file,
                &serde_json::to_string_pretty(&serde_json::Value::Object(one)).unwrap(),
            )
        })
        .collect()
}

#[test]
fn children_files_before_parents_files_load_in_foreign_key_order() {
    let db = demo_db("files_fk_order");
    let dir = tempfile::tempdir().unwrap();
    let files = split_demo(
        dir.path(),
        &[
            ("payments", "1.json"),
            ("cleaning_jobs", "2.json"),
            ("properties", "3.json"),
            ("clients", "4.json"),
            ("users", "5.json"),
        ],
    );
    let args: Vec<&str> = files.iter().map(|p| path_str(p)).collect();
    let out = load(&db, &args);
    assert_contains(
        &out.stderr,
        &[
            "Loaded 44 rows into 5 tables from 5 files",
            "realigned 5 sequences",
        ],
    );
    demo_inserts_succeed(&db);
}

#[test]
fn directory_whose_files_sort_children_first() {
    let db = demo_db("dir_fk_order");
    let dir = tempfile::tempdir().unwrap();
    split_demo(
        dir.path(),
        &[
            ("payments", "a_payments.json"),
            ("cleaning_jobs", "b_jobs.json"),
            ("properties", "c_properties.json"),
            ("clients", "d_clients.json"),
            ("users", "e_users.json"),
        ],
    );
    // Not fixtures: ignored.
    write(dir.path(), "README.txt", "not json");
    write(dir.path(), ".hidden.json", "not json either");
    let out = load(&db, &[path_str(dir.path())]);
    assert_contains(&out.stderr, &["Loaded 44 rows into 5 tables from 5 files"]);
    demo_inserts_succeed(&db);
}

#[test]
fn children_table_before_parents_table_in_one_file() {
    let db = demo_db("one_file_fk_order");
    let demo: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&fs::read_to_string(demo_fixture()).unwrap()).unwrap();
    let mut reversed = serde_json::Map::new();
    for (k, v) in demo.iter().rev() {
        reversed.insert(k.clone(), v.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "rev.json",
        &serde_json::to_string(&serde_json::Value::Object(reversed)).unwrap(),
    );
    load(&db, &[path_str(&f)]);
    assert_eq!(int(&db, "SELECT count(*) FROM payments"), 10);
    demo_inserts_succeed(&db);
}

#[test]
fn all_paths_are_one_transaction() {
    let db = demo_db("one_transaction");
    let dir = tempfile::tempdir().unwrap();
    let good = demo_fixture();
    // The second file is fine JSON but its row breaks a CHECK: nothing of the first may stay.
    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"payments": [{"id": 99, "job_id": 5, "amount": -1, "method": "cash"}]}"#,
    );
    let before = snapshot(&db);
    let err = load_fails(&db, &[path_str(&good), path_str(&bad)]);
    assert_contains(
        &err,
        &["bad.json", "payments", "row 0", "id=99", "check constraint"],
    );
    assert_eq!(snapshot(&db), before);
}

#[test]
fn stdin_dash() {
    let db = demo_db("stdin_load");
    let out = dbf_stdin(&db, &["load", "-"], Some(fs::read(demo_fixture()).unwrap()));
    assert_eq!(out.code, 0, "{out:#?}");
    assert_contains(&out.stderr, &["Loaded 44 rows into 5 tables from 1 file"]);
    demo_inserts_succeed(&db);

    // Errors name <stdin>.
    let db = demo_db("stdin_error");
    let out = dbf_stdin(
        &db,
        &["load", "-"],
        Some(b"{\"users\": [\n  {\"id\": 1, \"email\": \"a\", \"full_name\": \"A\"},\n  {\"id\": 2,}\n]}".to_vec()),
    );
    assert_eq!(out.code, 2, "{out:#?}");
    assert_contains(&out.stderr, &["<stdin>:3:"]);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn gzip_by_extension_also_in_directories() {
    let db = demo_db("gzip_load");
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("demo.json.gz");
    fs::write(&gz, gzip(&fs::read(demo_fixture()).unwrap())).unwrap();
    let out = load(&db, &[path_str(&gz)]);
    assert_contains(&out.stderr, &["Loaded 44 rows into 5 tables from 1 file"]);
    demo_inserts_succeed(&db);

    // A directory mixing .json and .json.gz, children first, loads as one.
    let db = demo_db("gzip_dir_load");
    let d = tempfile::tempdir().unwrap();
    let files = split_demo(
        d.path(),
        &[
            ("payments", "1.json"),
            ("cleaning_jobs", "2.json"),
            ("properties", "3.json"),
            ("clients", "4.json"),
            ("users", "5.json"),
        ],
    );
    for f in &files[2..] {
        let data = fs::read(f).unwrap();
        fs::write(format!("{}.gz", f.display()), gzip(&data)).unwrap();
        fs::remove_file(f).unwrap();
    }
    let out = load(&db, &[path_str(d.path())]);
    assert_contains(&out.stderr, &["Loaded 44 rows into 5 tables from 5 files"]);

    // A syntax error inside a gzip file names the file and its line.
    let bad = dir.path().join("bad.json.gz");
    fs::write(&bad, gzip(b"{\"users\": [\n{\"id\": 1\n]}")).unwrap();
    let err = load_fails(&db, &[path_str(&bad)]);
    assert_contains(&err, &["bad.json.gz:"]);
}

#[test]
fn missing_path_and_empty_directory_are_errors() {
    let db = demo_db("missing_paths");
    let dir = tempfile::tempdir().unwrap();
    let err = load_fails(&db, &[path_str(&dir.path().join("nope.json"))]);
    assert_contains(&err, &["nope.json", "no such file"]);
    let err = load_fails(&db, &[path_str(dir.path())]);
    assert_contains(&err, &["no fixture files"]);
}

// ---------------------------------------------------------------------------------------------
// Foreign keys: self-references, cycles

#[test]
fn self_reference_to_later_rows() {
    let db = TestDb::new("self_ref");
    db.sql(
        "CREATE TABLE node (id serial PRIMARY KEY, parent_id int REFERENCES node (id), \
         name text NOT NULL)",
    );
    let role = AppRole::new(&db, "self_ref");
    let url = role.url();
    let run = |f: &Path| {
        let out = cmd()
            .args(["load", path_str(f), "--database-url", url.as_str()])
            .output()
            .unwrap();
        Out {
            code: out.status.code().unwrap(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "nodes.json",
        r#"{"node": [
            {"id": 1, "parent_id": 3, "name": "leaf"},
            {"id": 2, "parent_id": 3, "name": "leaf 2"},
            {"id": 3, "parent_id": 4, "name": "middle"},
            {"id": 4, "parent_id": null, "name": "root"}
        ]}"#,
    );
    let out = run(&f);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(
        scalar(&db, "SELECT string_agg(id || '>' || coalesce(parent_id::text, '-'), ' ' ORDER BY id) FROM node"),
        "1>3 2>3 3>4 4>-"
    );
    // Again (upsert into a non-empty table) changes nothing.
    let sum = checksum(&db, "node");
    let out = run(&f);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_contains(&out.stderr, &["0 inserted, 0 updated, 4 unchanged"]);
    assert_eq!(checksum(&db, "node"), sum);
    assert_eq!(
        int(&db, "INSERT INTO node (name) VALUES ('new') RETURNING id"),
        5
    );
}

#[test]
fn self_reference_to_later_rows_with_varying_columns() {
    // Hand-written fixtures leave out columns in some rows: the rows no longer share one column
    // list, yet a row may still reference a later one.
    let db = TestDb::new("self_ref_varying");
    db.sql(
        "CREATE TABLE node (id serial PRIMARY KEY, parent_id int REFERENCES node (id), \
         name text NOT NULL DEFAULT 'unnamed')",
    );
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "nodes.json",
        r#"{"node": [
            {"id": 1, "parent_id": 2},
            {"id": 2, "parent_id": 3, "name": "middle"},
            {"id": 3}
        ]}"#,
    );
    load(&db, &[path_str(&f)]);
    assert_eq!(
        scalar(&db, "SELECT string_agg(id || '>' || coalesce(parent_id::text, '-') || ':' || name, ' ' ORDER BY id) FROM node"),
        "1>2:unnamed 2>3:middle 3>-:unnamed"
    );
}

const CYCLE_FIXTURE: &str = r#"{
  "a": [{"id": 1, "b_id": 2, "label": "a1"}, {"id": 2, "b_id": null, "label": "a2"}],
  "b": [{"id": 1, "a_id": 1}, {"id": 2, "a_id": 2}]
}"#;

#[test]
fn nullable_cycle_loads_without_superuser_or_deferrable() {
    let db = TestDb::new("cycle_nullable");
    db.sql(
        "CREATE TABLE a (id serial PRIMARY KEY, b_id int, label text);
         CREATE TABLE b (id serial PRIMARY KEY, a_id int REFERENCES a (id));
         ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b (id);",
    );
    let role = AppRole::new(&db, "cycle");
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "cycle.json", CYCLE_FIXTURE);
    let url = role.url();
    let run = |extra: &[&str]| {
        let mut args = vec!["load", path_str(&f)];
        args.extend_from_slice(extra);
        args.extend(["--database-url", url.as_str()]);
        let out = cmd().args(&args).output().unwrap();
        Out {
            code: out.status.code().unwrap(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    };
    let out = run(&[]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_contains(
        &out.stderr,
        &["Loaded 4 rows into 2 tables", "realigned 2 sequences"],
    );
    let state = || {
        scalar(
            &db,
            "SELECT (SELECT string_agg(id || ':' || coalesce(b_id::text, '-') || ':' || label, ' ' ORDER BY id) FROM a) \
             || ' | ' || (SELECT string_agg(id || ':' || a_id, ' ' ORDER BY id) FROM b)",
        )
    };
    assert_eq!(state(), "1:2:a1 2:-:a2 | 1:1 2:2");

    // Re-running changes nothing and says so.
    let snap = snapshot(&db);
    let out = run(&[]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_contains(
        &out.stderr,
        &[
            "0 inserted, 0 updated, 4 unchanged",
            "realigned 0 sequences",
        ],
    );
    assert_eq!(snapshot(&db), snap);

    // An edited cycle value is updated; insert mode into the emptied tables works too.
    db.sql("UPDATE a SET b_id = 1 WHERE id = 1");
    let out = run(&[]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(state(), "1:2:a1 2:-:a2 | 1:1 2:2");
    db.sql("UPDATE a SET b_id = NULL; DELETE FROM b; DELETE FROM a;");
    let out = run(&["--mode", "insert"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(state(), "1:2:a1 2:-:a2 | 1:1 2:2");
}

#[test]
fn deferrable_cycle_loads() {
    let db = TestDb::new("cycle_deferrable");
    db.sql(
        "CREATE TABLE a (id int PRIMARY KEY, b_id int NOT NULL, label text);
         CREATE TABLE b (id int PRIMARY KEY, a_id int NOT NULL REFERENCES a (id) DEFERRABLE);
         ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b (id) DEFERRABLE INITIALLY IMMEDIATE;",
    );
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "cycle.json",
        r#"{"a": [{"id": 1, "b_id": 2, "label": "x"}, {"id": 2, "b_id": 1, "label": "y"}],
            "b": [{"id": 1, "a_id": 2}, {"id": 2, "a_id": 1}]}"#,
    );
    load(&db, &[path_str(&f)]);
    assert_eq!(
        int(&db, "SELECT count(*) FROM a JOIN b ON b.id = a.b_id"),
        2
    );
    // A dangling reference is still caught (at the end) and nothing stays.
    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"a": [{"id": 3, "b_id": 9, "label": "dangling"}]}"#,
    );
    let before = snapshot(&db);
    let err = load_fails(&db, &[path_str(&bad)]);
    assert_contains(&err, &["foreign key", "a_b_id_fkey"]);
    assert_eq!(snapshot(&db), before);
}

#[test]
fn unbreakable_cycle_is_a_clear_error() {
    let db = TestDb::new("cycle_unbreakable");
    db.sql(
        "CREATE TABLE a (id int PRIMARY KEY, b_id int NOT NULL);
         CREATE TABLE b (id int PRIMARY KEY, a_id int NOT NULL REFERENCES a (id));
         ALTER TABLE a ADD CONSTRAINT a_needs_b FOREIGN KEY (b_id) REFERENCES b (id);",
    );
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "cycle.json",
        r#"{"a": [{"id": 1, "b_id": 1}], "b": [{"id": 1, "a_id": 1}]}"#,
    );
    let err = load_fails(&db, &[path_str(&f)]);
    assert_contains(
        &err,
        &[
            "cannot load these tables in any order",
            "a_needs_b",
            "b_a_id_fkey",
        ],
    );
    assert_eq!(int(&db, "SELECT count(*) FROM a"), 0);
}

// ---------------------------------------------------------------------------------------------
// Modes

#[test]
fn upsert_updates_inserts_and_touches_nothing_else() {
    let db = demo_db("upsert_mode");
    let demo = demo_fixture();
    load(&db, &[path_str(&demo)]);
    let loaded = snapshot(&db);

    // Re-running the same load: 0 inserted, 0 updated, nothing changes (sequences included).
    let out = load(&db, &[path_str(&demo)]);
    assert_contains(
        &out.stderr,
        &["Loaded 44 rows into 5 tables from 1 file (0 inserted, 0 updated, 44 unchanged); realigned 0 sequences"],
    );
    assert_eq!(snapshot(&db), loaded);

    // A row not in the fixture stays; an edited row is put back; a deleted row comes back.
    db.sql(
        "INSERT INTO users (id, email, full_name) VALUES (50, 'extra@example.com', 'Extra');
         UPDATE clients SET name = 'Edited', vip = true WHERE id = 2;
         DELETE FROM payments WHERE id = 10;",
    );
    let out = load(&db, &[path_str(&demo)]);
    assert_contains(&out.stderr, &["(1 inserted, 1 updated, 42 unchanged)"]);
    assert_eq!(
        scalar(&db, "SELECT name FROM clients WHERE id = 2"),
        "Maple Street Dental"
    );
    assert_eq!(
        scalar(&db, "SELECT full_name FROM users WHERE id = 50"),
        "Extra"
    );
    assert_eq!(int(&db, "SELECT count(*) FROM payments"), 10);
    // A partial fixture updates only the columns it names.
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "partial.json",
        r#"{"clients": [{"id": 1, "phone": "+1-555-9999"}]}"#,
    );
    let out = load(&db, &[path_str(&f)]);
    assert_contains(&out.stderr, &["(0 inserted, 1 updated, 0 unchanged)"]);
    assert_eq!(
        scalar(&db, "SELECT name || ' ' || phone FROM clients WHERE id = 1"),
        "José Álvarez +1-555-9999"
    );
    // The same partial row for a key that does not exist is a new row missing a NOT NULL
    // column: an error naming it, and nothing changes.
    let g = write(
        dir.path(),
        "new_partial.json",
        "{\"clients\": [\n  {\"id\": 1, \"phone\": \"+1-555-9999\"},\n  {\"id\": 99, \"phone\": \"x\"}\n]}",
    );
    let before = snapshot(&db);
    let err = load_fails(&db, &[path_str(&g)]);
    assert_contains(
        &err,
        &[
            "new_partial.json:3",
            "table clients",
            "row 1 (id=99)",
            "column name",
            "not-null",
        ],
    );
    assert_eq!(snapshot(&db), before);
    demo_inserts_succeed(&db);
}

#[test]
fn insert_mode_existing_key_is_an_error_naming_the_row() {
    let db = demo_db("insert_mode");
    let demo = demo_fixture();
    let out = load(&db, &["--mode", "insert", path_str(&demo)]);
    assert_contains(&out.stderr, &["Loaded 44 rows into 5 tables"]);
    let before = snapshot(&db);
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "more.json",
        "{\"users\": [\n  {\"id\": 10, \"email\": \"ten@example.com\", \"full_name\": \"Ten\"},\n  {\"id\": 3, \"email\": \"three@example.com\", \"full_name\": \"Three\"}\n]}",
    );
    let err = load_fails(&db, &["--mode", "insert", path_str(&f)]);
    assert_contains(
        &err,
        &[
            "more.json:3",
            "table users",
            "row 1 (id=3)",
            "duplicate key value violates unique constraint \"users_pkey\"",
            "Key (id)=(3) already exists",
        ],
    );
    assert_eq!(snapshot(&db), before);
    // A duplicate on another unique key (email) is named too.
    let f = write(
        dir.path(),
        "email.json",
        r#"{"users": [{"id": 11, "email": "ana@example.com", "full_name": "Ana again"}]}"#,
    );
    let err = load_fails(&db, &["--mode", "insert", path_str(&f)]);
    assert_contains(&err, &["email.json:1", "row 0 (id=11)", "users_email_key"]);
    assert_eq!(snapshot(&db), before);
}

#[test]
fn replace_empties_the_named_tables_then_inserts() {
    let db = demo_db("replace_test_mode");
    let demo = demo_fixture();
    load(&db, &[path_str(&demo)]);
    db.sql(
        "SELECT setval('users_id_seq', 70);
         INSERT INTO users (email, full_name) VALUES ('seventy@example.com', 'Seventy');
         UPDATE clients SET name = 'Edited' WHERE id = 2;",
    );
    let out = load(&db, &["--mode", "replace", path_str(&demo)]);
    assert_contains(
        &out.stderr,
        &["Loaded 44 rows into 5 tables", "users_id_seq: 72 → 5"],
    );
    assert_eq!(int(&db, "SELECT count(*) FROM users"), 4);
    assert_eq!(
        scalar(&db, "SELECT name FROM clients WHERE id = 2"),
        "Maple Street Dental"
    );
    demo_inserts_succeed(&db);

    // A table not named in the fixtures but referencing one that is: refused while it has
    // referencing rows, naming it; nothing changes.
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "users.json",
        r#"{"users": [{"id": 1, "email": "only@example.com", "full_name": "Only"}]}"#,
    );
    let before = snapshot(&db);
    let err = load_fails(&db, &["--mode", "replace", path_str(&f)]);
    assert_contains(&err, &["clients", "cleaning_jobs", "still reference"]);
    assert_eq!(snapshot(&db), before);

    // Referencing tables that are empty (or whose references are all NULL) do not block.
    db.sql(
        "TRUNCATE payments, cleaning_jobs, properties, clients;
         INSERT INTO clients (id, name) VALUES (100, 'no manager');",
    );
    load(&db, &["--mode", "replace", path_str(&f)]);
    assert_eq!(
        scalar(&db, "SELECT string_agg(email, ',') FROM users"),
        "only@example.com"
    );
    assert_eq!(int(&db, "SELECT count(*) FROM clients"), 1);
}

#[test]
fn replace_never_empties_tables_outside_the_fixtures() {
    // `note` references `person` through a nullable column; its rows reference nobody, so
    // replacing `person` is allowed, and must leave `note` alone. `tag` (empty) references
    // `note`, so TRUNCATE could not be used without naming tables outside the fixtures.
    let db = TestDb::new("replace_test_outside");
    db.sql(
        "CREATE TABLE person (id serial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE note (id serial PRIMARY KEY, person_id int REFERENCES person (id), body text);
         CREATE TABLE tag (id serial PRIMARY KEY, note_id int NOT NULL REFERENCES note (id));
         INSERT INTO person (name) VALUES ('old one'), ('old two');
         INSERT INTO note (person_id, body) VALUES (NULL, 'keep me'), (NULL, 'me too');",
    );
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "person.json",
        r#"{"person": [{"id": 1, "name": "new"}]}"#,
    );
    let out = load(&db, &["--mode", "replace", path_str(&f)]);
    assert_contains(
        &out.stderr,
        &["Loaded 1 row into 1 table", "person_id_seq: 3 → 2"],
    );
    assert_eq!(
        scalar(&db, "SELECT string_agg(id || name, ',') FROM person"),
        "1new"
    );
    assert_eq!(
        scalar(&db, "SELECT string_agg(body, ',' ORDER BY id) FROM note"),
        "keep me,me too"
    );
    // With `note` empty, the fast path (TRUNCATE taking the empty tables along) gives the same.
    db.sql("DELETE FROM note");
    load(&db, &["--mode", "replace", path_str(&f)]);
    assert_eq!(
        scalar(&db, "SELECT string_agg(id || name, ',') FROM person"),
        "1new"
    );
    // A referencing row blocks, naming its table and constraint.
    db.sql("INSERT INTO note (person_id, body) VALUES (1, 'points at 1')");
    let before = snapshot(&db);
    let err = load_fails(&db, &["--mode", "replace", path_str(&f)]);
    assert_contains(&err, &["note (via note_person_id_fkey → person)"]);
    assert_eq!(snapshot(&db), before);
}

#[test]
fn replace_refuses_on_a_database_not_named_like_dev_unless_forced() {
    let db = demo_db("prod_guard");
    assert!(!dbfixtures::load::looks_like_dev_database(&scalar(
        &db,
        "SELECT current_database()"
    )));
    let demo = demo_fixture();
    load(&db, &[path_str(&demo)]);
    let before = snapshot(&db);
    let err = load_fails(&db, &["--mode", "replace", path_str(&demo)]);
    assert_contains(&err, &["refusing --mode replace", "--force", "test"]);
    assert_eq!(snapshot(&db), before);
    // Dry run is refused too (it would be refused for real).
    load_fails(&db, &["--mode", "replace", "--dry-run", path_str(&demo)]);
    let out = load(&db, &["--mode", "replace", "--force", path_str(&demo)]);
    assert_contains(&out.stderr, &["Loaded 44 rows"]);
    assert_eq!(snapshot(&db), before);
}

#[test]
fn help_states_the_replace_rule() {
    let out = cmd().args(["load", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert_contains(
        &help,
        &[
            "upsert",
            "insert",
            "replace",
            "--force",
            "--dry-run",
            "dev",
            "test",
            "one transaction",
        ],
    );
}

#[test]
fn upsert_without_ids_matches_on_a_unique_key_or_an_identical_row() {
    let db = demo_db("upsert_no_ids");
    let dir = tempfile::tempdir().unwrap();
    // users: matched on the email unique key; clients (no unique key but id): an identical row
    // counts as already there.
    let f = write(
        dir.path(),
        "hand.json",
        r#"{"users": [{"email": "a@example.com", "full_name": "A"},
                      {"email": "b@example.com", "full_name": "B"}],
            "clients": [{"name": "Walk-in", "vip": true}]}"#,
    );
    load(&db, &[path_str(&f)]);
    let loaded = snapshot(&db);
    let out = load(&db, &[path_str(&f)]);
    assert_contains(
        &out.stderr,
        &[
            "(0 inserted, 0 updated, 3 unchanged)",
            "realigned 0 sequences",
        ],
    );
    assert_eq!(
        snapshot(&db),
        loaded,
        "a re-run without ids changes nothing, sequences included"
    );
    // Matched by email, the other columns are updated.
    let g = write(
        dir.path(),
        "rename.json",
        r#"{"users": [{"email": "b@example.com", "full_name": "Bea"}]}"#,
    );
    let out = load(&db, &[path_str(&g)]);
    assert_contains(&out.stderr, &["(0 inserted, 1 updated, 0 unchanged)"]);
    assert_eq!(
        scalar(
            &db,
            "SELECT id || full_name FROM users WHERE email = 'b@example.com'"
        ),
        "2Bea"
    );
    assert_eq!(
        int(
            &db,
            "INSERT INTO users (email, full_name) VALUES ('c@x', 'C') RETURNING id"
        ),
        3
    );
}

#[test]
fn composite_keys_schemas_partitions_and_one_table_in_several_files() {
    let db = TestDb::new("keys_schemas");
    db.sql(
        "CREATE SCHEMA archive;
         CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE archive.items (id int PRIMARY KEY, item_id int REFERENCES items (id));
         CREATE TABLE \"odd.name\" (a int, b text, v int CHECK (v > 0), PRIMARY KEY (a, b));
         CREATE TABLE measure (id bigserial, at date NOT NULL, v int, PRIMARY KEY (id, at))
           PARTITION BY RANGE (at);
         CREATE TABLE measure_2023 PARTITION OF measure FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
         CREATE TABLE measure_2024 PARTITION OF measure FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');",
    );
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.json",
        r#"{"archive.items": [{"id": 1, "item_id": 2}],
            "\"odd.name\"": [{"a": 1, "b": "x", "v": 1}, {"a": 1, "b": "y", "v": 2}],
            "measure": [{"id": 1, "at": "2023-05-01", "v": 1}, {"id": 2, "at": "2024-05-01", "v": 2}]}"#,
    );
    let b = write(
        dir.path(),
        "b.json",
        r#"{"items": [{"id": 2, "name": "two"}],
            "measure": [{"at": "2024-06-01", "v": 3}]}"#,
    );
    let out = load(&db, &[path_str(&a), path_str(&b)]);
    assert_contains(&out.stderr, &["Loaded 7 rows into 4 tables from 2 files"]);
    assert_eq!(int(&db, "SELECT count(*) FROM measure_2024"), 2);
    // The row without an id took the sequence's first value (its key is (id, at)).
    assert_eq!(
        scalar(
            &db,
            "SELECT string_agg(id || '@' || at, ' ' ORDER BY at) FROM measure"
        ),
        "1@2023-05-01 2@2024-05-01 1@2024-06-01"
    );
    assert_eq!(
        int(
            &db,
            "INSERT INTO measure (at, v) VALUES ('2024-07-01', 4) RETURNING id"
        ),
        3
    );
    db.sql("DELETE FROM measure WHERE v = 4; SELECT setval('measure_id_seq', 2)");
    // Re-running: rows with their key are matched on it, the row without is matched as an
    // identical row on the columns it has.
    let out = load(&db, &[path_str(&a), path_str(&b)]);
    assert_contains(&out.stderr, &["(0 inserted, 0 updated, 7 unchanged)"]);
    // Errors name composite keys.
    let bad = write(
        dir.path(),
        "bad.json",
        "{\"\\\"odd.name\\\"\": [\n  {\"a\": 2, \"b\": \"z\", \"v\": 0}\n]}",
    );
    let err = load_fails(&db, &[path_str(&bad)]);
    assert_contains(
        &err,
        &[
            "bad.json:2",
            "table \"odd.name\"",
            "row 0 ((a, b)=(2, \"z\"))",
            "odd.name_v_check",
        ],
    );
}

#[test]
fn empty_tables_and_empty_documents() {
    let db = demo_db("empty_docs");
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "empty.json", r#"{"users": [], "clients": []}"#);
    let out = load(&db, &[path_str(&f)]);
    assert_contains(&out.stderr, &["Loaded 0 rows into 2 tables from 1 file"]);
    let g = write(dir.path(), "nothing.json", "{}\n");
    let out = load(&db, &[path_str(&g)]);
    assert_contains(&out.stderr, &["Loaded 0 rows into 0 tables from 1 file"]);
    // A duplicated column in a row is an error, not a silent pick.
    let h = write(
        dir.path(),
        "dup.json",
        r#"{"users": [{"id": 1, "email": "a@x", "full_name": "A", "email": "b@x"}]}"#,
    );
    let err = load_fails(&db, &[path_str(&h)]);
    assert_contains(
        &err,
        &["dup.json:1", "table users", "row 0", "appears twice"],
    );
    assert_eq!(int(&db, "SELECT count(*) FROM users"), 0);
}

#[test]
fn cycle_rows_that_leave_out_the_cycle_column() {
    let db = TestDb::new("cycle_partial");
    db.sql(
        "CREATE TABLE a (id int PRIMARY KEY, b_id int, label text);
         CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a (id));
         ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b (id);",
    );
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "cycle.json",
        r#"{"a": [{"id": 1, "b_id": 1}, {"id": 2, "label": "no b"}, {"id": 3, "b_id": 2}],
            "b": [{"id": 1, "a_id": 3}, {"id": 2}]}"#,
    );
    load(&db, &[path_str(&f)]);
    assert_eq!(
        scalar(
            &db,
            "SELECT string_agg(id || ':' || coalesce(b_id::text, '-'), ' ' ORDER BY id) FROM a"
        ),
        "1:1 2:- 3:2"
    );
    let out = load(&db, &[path_str(&f)]);
    assert_contains(&out.stderr, &["(0 inserted, 0 updated, 5 unchanged)"]);
}

// ---------------------------------------------------------------------------------------------
// Defaults, identity, generated columns

#[test]
fn omitted_columns_take_their_defaults() {
    let db = demo_db("defaults");
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "hand.json",
        r#"{
  "users": [
    {"email": "a@example.com", "full_name": "A"},
    {"email": "b@example.com", "full_name": "B", "is_admin": true}
  ],
  "clients": [{"name": "No id, no timestamp"}]
}"#,
    );
    let out = load(&db, &[path_str(&f)]);
    assert_contains(&out.stderr, &["Loaded 3 rows into 2 tables"]);
    assert_eq!(
        scalar(
            &db,
            "SELECT string_agg(id || ':' || email || ':' || is_admin, ' ' ORDER BY id) FROM users"
        ),
        "1:a@example.com:false 2:b@example.com:true"
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT bool_and(created_at > now() - interval '5 minutes' AND created_at <= now()) \
             FROM (SELECT created_at FROM users UNION ALL SELECT created_at FROM clients) s"
        ),
        "true"
    );
    assert_eq!(
        scalar(&db, "SELECT id || ':' || vip FROM clients"),
        "1:false"
    );
    assert_eq!(
        int(
            &db,
            "INSERT INTO users (email, full_name) VALUES ('c@example.com', 'C') RETURNING id"
        ),
        3
    );
}

#[test]
fn identity_always_takes_explicit_values_in_every_mode() {
    let db = TestDb::new("identity_always_test");
    db.sql(
        "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY (START WITH 100) PRIMARY KEY, \
         v text)",
    );
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "t.json",
        r#"{"t": [{"id": 5, "v": "five"}, {"id": 7, "v": "seven"}]}"#,
    );
    load(&db, &[path_str(&f)]);
    assert_eq!(
        scalar(&db, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"),
        "5,7"
    );
    // Upsert into the non-empty table (the staged path), with a change and a new row.
    let g = write(
        dir.path(),
        "t2.json",
        r#"{"t": [{"id": 7, "v": "SEVEN"}, {"id": 9, "v": "nine"}]}"#,
    );
    let out = load(&db, &[path_str(&g)]);
    assert_contains(&out.stderr, &["(1 inserted, 1 updated, 0 unchanged)"]);
    assert_eq!(
        scalar(&db, "SELECT string_agg(id || v, ',' ORDER BY id) FROM t"),
        "5five,7SEVEN,9nine"
    );
    load(&db, &["--mode", "replace", path_str(&f)]);
    assert_eq!(
        scalar(&db, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"),
        "5,7"
    );
    // Rows without an id take the identity's next value, then everything is realigned.
    let h = write(dir.path(), "t3.json", r#"{"t": [{"v": "auto"}]}"#);
    load(&db, &["--mode", "insert", path_str(&h)]);
    assert_eq!(int(&db, "INSERT INTO t (v) VALUES ('app') RETURNING id"), 9);
}

#[test]
fn generated_columns_are_never_written() {
    let db = TestDb::new("generated_cols");
    db.sql(
        "CREATE TABLE line (id serial PRIMARY KEY, price numeric NOT NULL, qty int NOT NULL, \
         total numeric GENERATED ALWAYS AS (price * qty) STORED)",
    );
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "line.json",
        r#"{"line": [{"id": 1, "price": 2.5, "qty": 4, "total": 999},
                     {"id": 2, "price": 1, "qty": 3}]}"#,
    );
    load(&db, &[path_str(&f)]);
    assert_eq!(
        scalar(
            &db,
            "SELECT string_agg(id || '=' || total, ' ' ORDER BY id) FROM line"
        ),
        "1=10.0 2=3"
    );
    // Upsert (staged path) ignores it too, and recomputes from the new values.
    let g = write(
        dir.path(),
        "line2.json",
        r#"{"line": [{"id": 1, "price": 3, "qty": 4, "total": -1}]}"#,
    );
    load(&db, &[path_str(&g)]);
    assert_eq!(scalar(&db, "SELECT total FROM line WHERE id = 1"), "12");
}

// ---------------------------------------------------------------------------------------------
// Dry run

#[test]
fn dry_run_reports_and_changes_nothing_not_even_sequences() {
    let db = demo_db("dry_run");
    let before = snapshot(&db);
    let out = load(&db, &["--dry-run", path_str(&demo_fixture())]);
    assert_contains(
        &out.stderr,
        &[
            "Dry run, rolled back: would have loaded 44 rows into 5 tables from 1 file",
            "realigned 5 sequences",
        ],
    );
    assert_eq!(snapshot(&db), before);

    // Rows without ids draw from the sequences (nextval is not transactional): still unchanged.
    load(&db, &[path_str(&demo_fixture())]);
    let before = snapshot(&db);
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "new.json",
        r#"{"users": [{"email": "n1@example.com", "full_name": "N1"},
                      {"email": "n2@example.com", "full_name": "N2"}],
            "clients": [{"name": "no id"}]}"#,
    );
    let out = load(&db, &["--dry-run", path_str(&f)]);
    assert_contains(
        &out.stderr,
        &["Dry run, rolled back: would have loaded 3 rows"],
    );
    assert_eq!(snapshot(&db), before);
    // Replace empties tables: rolled back too.
    let out = load(
        &db,
        &[
            "--dry-run",
            "--mode",
            "replace",
            "--force",
            path_str(&demo_fixture()),
        ],
    );
    assert_contains(
        &out.stderr,
        &["Dry run, rolled back: would have loaded 44 rows"],
    );
    assert_eq!(snapshot(&db), before);
    demo_inserts_succeed(&db);
}

// ---------------------------------------------------------------------------------------------
// Errors: where, what, and nothing changed

/// Loads `content` (as `name`) into a demo database holding the demo fixture, expects an error
/// containing every one of `needles`, and checks the database is exactly as before.
fn demo_error(db: &TestDb, name: &str, content: &str, mode: &str, needles: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), name, content);
    let before = snapshot(db);
    let err = load_fails(db, &["--mode", mode, path_str(&f)]);
    assert_contains(&err, needles);
    assert_eq!(
        snapshot(db),
        before,
        "database changed by a failed load: {err}"
    );
    err
}

#[test]
fn malformed_json_names_file_line_and_column() {
    let db = demo_db("malformed");
    load(&db, &[path_str(&demo_fixture())]);
    // Missing comma between rows.
    demo_error(
        &db,
        "comma.json",
        "{\"users\": [\n  {\"id\": 9, \"email\": \"x\", \"full_name\": \"X\"}\n  {\"id\": 10}\n]}",
        "upsert",
        &["comma.json:3:3", "expected ',' or ']'"],
    );
    // Bad token inside a row.
    demo_error(
        &db,
        "token.json",
        "{\"users\": [\n  {\"id\": 9,\n   \"email\": tru, \"full_name\": \"X\"}\n]}",
        "upsert",
        &["token.json:3:", "table users"],
    );
    // Not an object at the top.
    demo_error(
        &db,
        "array.json",
        "[1, 2]",
        "upsert",
        &["array.json:1:1", "JSON object"],
    );
    // A later file's syntax error stops everything before anything is written.
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "a_good.json",
        r#"{"users": [{"id": 20, "email": "twenty@example.com", "full_name": "T"}]}"#,
    );
    let bad = write(
        dir.path(),
        "b_bad.json",
        "{\"users\": [\n\n  {\"id\": 21,,}]}",
    );
    let before = snapshot(&db);
    let err = load_fails(&db, &[path_str(&good), path_str(&bad)]);
    assert_contains(&err, &["b_bad.json:3:"]);
    assert_eq!(snapshot(&db), before);
}

#[test]
fn truncated_json_is_an_error_and_changes_nothing() {
    let db = demo_db("truncated");
    let demo = fs::read_to_string(demo_fixture()).unwrap();
    for cut in [demo.len() / 2, demo.len() - 3, 40] {
        let mut at = cut;
        while !demo.is_char_boundary(at) {
            at -= 1;
        }
        let err = demo_error(&db, "cut.json", &demo[..at], "upsert", &["cut.json:"]);
        assert!(err.contains("truncated") || err.contains("EOF"), "{err}");
    }
    assert_eq!(int(&db, "SELECT count(*) FROM users"), 0);
}

#[test]
fn unknown_table_and_unknown_column() {
    let db = demo_db("unknown_names");
    load(&db, &[path_str(&demo_fixture())]);
    demo_error(
        &db,
        "t.json",
        "{\"users\": [],\n \"usres\": [{\"id\": 1}]}",
        "upsert",
        &["t.json:2:2", "unknown table usres"],
    );
    demo_error(
        &db,
        "c.json",
        "{\"users\": [\n  {\"id\": 1, \"email\": \"ana@example.com\", \"full_name\": \"Ana\"},\n  {\"id\": 2, \"emial\": \"b@example.com\", \"full_name\": \"B\"}\n]}",
        "upsert",
        &["c.json:3", "table users", "row 1 (id=2)", "column emial", "no column \"emial\""],
    );
}

#[test]
fn wrong_types_name_file_table_row_key_and_column() {
    let db = demo_db("wrong_types");
    load(&db, &[path_str(&demo_fixture())]);
    // Found while encoding: "abc" into an integer, an object into a text column.
    demo_error(
        &db,
        "int.json",
        "{\"properties\": [\n  {\"id\": 20, \"client_id\": 1, \"address\": \"x\", \"square_feet\": \"abc\"}\n]}",
        "upsert",
        &["int.json:2", "table properties", "row 0 (id=20)", "column square_feet", "abc"],
    );
    demo_error(
        &db,
        "obj.json",
        "{\"clients\": [\n  {\"id\": 1, \"name\": \"ok\"},\n  {\"id\": 30, \"name\": {\"first\": \"Ana\"}}\n]}",
        "upsert",
        &["obj.json:3", "table clients", "row 1 (id=30)", "column name", "object"],
    );
    // Found by the server: a malformed timestamp, both on an empty-table COPY and on an upsert.
    demo_error(
        &db,
        "ts.json",
        "{\"users\": [\n  {\"id\": 40, \"email\": \"forty@example.com\", \"full_name\": \"F\", \"created_at\": \"not a date\"}\n]}",
        "upsert",
        &["ts.json:2", "table users", "row 0 (id=40)", "column created_at", "invalid input syntax for type timestamp with time zone"],
    );
    demo_error(
        &db,
        "num.json",
        "{\"cleaning_jobs\": [\n  {\"id\": 1, \"property_id\": 1, \"scheduled_for\": \"2024-03-04T09:00:00+00:00\", \"price\": 1e30}\n]}",
        "insert",
        &["num.json:2", "table cleaning_jobs", "row 0 (id=1)", "numeric field overflow"],
    );
}

#[test]
fn constraint_violations_name_file_table_row_key_and_message() {
    let db = demo_db("constraints");
    load(&db, &[path_str(&demo_fixture())]);
    // Foreign key to a missing parent (direct COPY in insert mode, staged in upsert mode).
    for mode in ["insert", "upsert"] {
        demo_error(
            &db,
            "fk.json",
            "{\"properties\": [\n  {\"id\": 20, \"client_id\": 1, \"address\": \"ok\"},\n  {\"id\": 21, \"client_id\": 999, \"address\": \"orphan\"}\n]}",
            mode,
            &["fk.json:3", "table properties", "row 1 (id=21)", "foreign key constraint \"properties_client_id_fkey\"", "(client_id)=(999)"],
        );
    }
    // NOT NULL: an explicit null.
    demo_error(
        &db,
        "nn.json",
        "{\"clients\": [\n  {\"id\": 40, \"name\": null}\n]}",
        "upsert",
        &[
            "nn.json:2",
            "table clients",
            "row 0 (id=40)",
            "column name",
            "null value in column \"name\"",
        ],
    );
    // CHECK.
    demo_error(
        &db,
        "check.json",
        "{\"cleaning_jobs\": [\n  {\"id\": 1, \"property_id\": 1, \"scheduled_for\": \"2024-03-04T09:00:00+00:00\", \"price\": 180, \"status\": \"done\"},\n  {\"id\": 30, \"property_id\": 1, \"scheduled_for\": \"2024-03-04T09:00:00+00:00\", \"price\": 5, \"status\": \"lost\"}\n]}",
        "upsert",
        &["check.json:3", "table cleaning_jobs", "row 1 (id=30)", "cleaning_jobs_status_check"],
    );
    // Unique key inside the fixture itself (two rows with the same email), in an empty table.
    let db2 = demo_db("constraints_empty");
    demo_error(
        &db2,
        "dup.json",
        "{\"users\": [\n  {\"id\": 1, \"email\": \"same@example.com\", \"full_name\": \"A\"},\n  {\"id\": 2, \"email\": \"same@example.com\", \"full_name\": \"B\"}\n]}",
        "upsert",
        &["dup.json:3", "table users", "row 1 (id=2)", "users_email_key"],
    );
    // Rows without ids draw from the sequence before the failure: it is put back.
    demo_error(
        &db2,
        "noid.json",
        "{\"users\": [\n  {\"email\": \"a@example.com\", \"full_name\": \"A\"},\n  {\"email\": \"b@example.com\", \"full_name\": null}\n]}",
        "upsert",
        &["noid.json:3", "table users", "row 1", "full_name"],
    );
}

// ---------------------------------------------------------------------------------------------
// Faults

/// A table with a CHECK and `n` rows in a file, the last one breaking the CHECK.
fn big_file(dir: &Path, name: &str, n: usize, bad_last: bool) -> PathBuf {
    let p = dir.join(name);
    let mut w = std::io::BufWriter::new(fs::File::create(&p).unwrap());
    writeln!(w, "{{\"big\": [").unwrap();
    for i in 0..n {
        let qty: i64 = if bad_last && i + 1 == n {
            -1
        } else {
            i as i64 % 100
        };
        let sep = if i + 1 == n { "" } else { "," };
        writeln!(
            w,
            "  {{\"id\": {}, \"name\": \"row number {i} with some text\", \"qty\": {qty}, \"at\": \"2024-01-01T00:00:00+00:00\"}}{sep}",
            i + 1
        )
        .unwrap();
    }
    writeln!(w, "]}}").unwrap();
    w.flush().unwrap();
    p
}

const BIG_TABLE: &str = "CREATE TABLE big (id bigserial PRIMARY KEY, name text NOT NULL, \
     qty int NOT NULL CHECK (qty >= 0), at timestamptz)";

#[test]
fn bad_row_at_the_end_of_a_large_file() {
    let db = TestDb::new("bad_last_row");
    db.sql(BIG_TABLE);
    db.sql("INSERT INTO big (name, qty) VALUES ('existing', 1)");
    let dir = tempfile::tempdir().unwrap();
    let f = big_file(dir.path(), "big.json", 50_000, true);
    let before = snapshot(&db);
    for mode in ["insert", "upsert"] {
        let started = Instant::now();
        // Into a non-empty table: insert mode stops at the existing key, upsert (the staged
        // path) at the CHECK of the last row.
        let err = load_fails(&db, &["--mode", mode, path_str(&f)]);
        let took = started.elapsed();
        if mode == "insert" {
            // id=1 exists, so insert mode stops at row 0.
            assert_contains(&err, &["row 0 (id=1)", "duplicate key"]);
        } else {
            assert_contains(
                &err,
                &[
                    "big.json:50001",
                    "table big",
                    "row 49999 (id=50000)",
                    "big_qty_check",
                ],
            );
        }
        assert_eq!(snapshot(&db), before);
        assert!(
            took < Duration::from_secs(60),
            "{mode}: finding the row took {took:?}"
        );
    }
    // Into an empty table (the direct COPY path).
    db.sql("TRUNCATE big");
    let before = snapshot(&db);
    let started = Instant::now();
    let err = load_fails(&db, &["--mode", "insert", path_str(&f)]);
    assert_contains(
        &err,
        &[
            "big.json:50001",
            "table big",
            "row 49999 (id=50000)",
            "big_qty_check",
        ],
    );
    assert_eq!(snapshot(&db), before);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "finding the row took {:?}",
        started.elapsed()
    );
}

#[test]
fn hostile_table_and_column_names() {
    let db = TestDb::new("hostile_names_test");
    let table = r#"x"; DROP TABLE y; --"#;
    let column = r#"c"; DROP TABLE y; --"#;
    db.sql(&format!(
        "CREATE TABLE y (id int PRIMARY KEY); INSERT INTO y VALUES (1);
         CREATE TABLE {} (id serial PRIMARY KEY, {} text, \"Mixed Case\" int, \"o'quote\" text);",
        ident(table),
        ident(column)
    ));
    let fixture = serde_json::json!({
        table: [
            {"id": 1, column: "v'1\"; DROP TABLE y; --", "Mixed Case": 1, "o'quote": "a"},
            {"id": 2, column: null, "Mixed Case": 2, "o'quote": "b"}
        ]
    });
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "hostile.json", &fixture.to_string());
    for mode in ["upsert", "upsert", "replace", "insert"] {
        if mode == "insert" {
            db.sql(&format!("DELETE FROM {}", ident(table)));
        }
        let out = load(&db, &["--mode", mode, path_str(&f)]);
        assert_contains(&out.stderr, &["Loaded 2 rows into 1 table"]);
        assert_eq!(int(&db, "SELECT count(*) FROM y"), 1, "{mode}: y dropped?");
        assert_eq!(
            scalar(
                &db,
                &format!(
                    "SELECT {} FROM {} WHERE id = 1",
                    ident(column),
                    ident(table)
                )
            ),
            "v'1\"; DROP TABLE y; --"
        );
    }
    assert_eq!(
        int(
            &db,
            &format!("INSERT INTO {} DEFAULT VALUES RETURNING id", ident(table))
        ),
        3
    );
    // Errors on those names are located too.
    let bad = serde_json::json!({ table: [{"id": 1, "Mixed Case": "no"}] });
    let g = write(dir.path(), "bad.json", &bad.to_string());
    let err = load_fails(&db, &[path_str(&g)]);
    assert_contains(&err, &["row 0 (id=1)", "column Mixed Case"]);
    assert_eq!(int(&db, "SELECT count(*) FROM y"), 1);
}

#[test]
fn password_in_the_url_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "f.json", r#"{"t": []}"#);
    let urls = [
        // Nothing listens there.
        "postgres://postgres:Hunter2Secret@127.0.0.1:1/app_test".to_string(),
        "postgres://postgres:Hunter2Secret%21@127.0.0.1:1/app_test".to_string(),
        // The server answers and refuses: no such role / no such database (password given).
        "postgres://no_such_role_x:Hunter2Secret@127.0.0.1:5432/postgres".to_string(),
        "postgres://postgres:Hunter2Secret@127.0.0.1:5432/no_such_db_hunter".to_string(),
        // IPv6 loopback has no pg_hba entry on a default test server: an authentication refusal.
        "postgres://postgres:Hunter2Secret@[::1]:5432/postgres".to_string(),
    ];
    for url in &urls {
        let out = cmd()
            .args(["load", path_str(&f), "--database-url", url])
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{url}: {all}");
        assert!(all.contains("error: "), "{url}: {all}");
        assert!(!all.contains("Hunter2"), "{url}: {all}");
    }
    // Connected, then failing on the fixture: the URL (and so the password) is not in the
    // message either.
    let db = TestDb::new("pw_after_connect");
    let mut u = url::Url::parse(&db.url()).unwrap();
    u.set_password(Some("Hunter2Secret")).unwrap();
    let out = cmd()
        .args(["load", path_str(&f), "--database-url", u.as_str()])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("unknown table t"), "{all}");
    assert!(!all.contains("Hunter2"), "{all}");
}

#[test]
fn sigkill_in_the_middle_of_a_large_load_leaves_nothing() {
    let db = TestDb::new("sigkill_mid_load");
    db.sql(BIG_TABLE);
    db.sql("INSERT INTO big (name, qty) VALUES ('existing', 1); SELECT setval('big_id_seq', 7);");
    let dir = tempfile::tempdir().unwrap();
    // Ids start past the existing row; the fixture has 300k rows.
    let p = dir.path().join("huge.json");
    {
        let mut w = std::io::BufWriter::new(fs::File::create(&p).unwrap());
        writeln!(w, "{{\"big\": [").unwrap();
        let n = 300_000;
        for i in 0..n {
            let sep = if i + 1 == n { "" } else { "," };
            writeln!(
                w,
                "  {{\"id\": {}, \"name\": \"row {i} with a bit of text to make it longer\", \"qty\": {}}}{sep}",
                i + 10,
                i % 7
            )
            .unwrap();
        }
        writeln!(w, "]}}").unwrap();
    }
    let before = snapshot(&db);
    let datname = scalar(&db, "SELECT current_database()");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dbfixtures"))
        .args(["load", "--quiet", path_str(&p), "--database-url", &db.url()])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the server is copying rows from it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut copied = 0;
    while Instant::now() < deadline {
        copied = db
            .query_scalar(&format!(
                "SELECT tuples_processed FROM pg_stat_progress_copy p \
                 JOIN pg_database d ON d.oid = p.datid WHERE d.datname = '{datname}'"
            ))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        if copied > 1000 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("load finished before it could be killed: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(copied > 1000, "never saw the COPY in progress");
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    // The server notices the dead client and rolls back: wait for its backend to go.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let others = int(
            &db,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{datname}' \
                 AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ),
        );
        if others == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed load's backend is still there"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(snapshot(&db), before);
    assert_eq!(
        int(
            &db,
            "INSERT INTO big (name, qty) VALUES ('app', 1) RETURNING id"
        ),
        8
    );
}

// ---------------------------------------------------------------------------------------------
// Round trips through dump

fn dump_to(db: &TestDb, args: &[&str]) -> Out {
    let mut all = vec!["dump"];
    all.extend_from_slice(args);
    let out = dbf(db, &all);
    assert_eq!(out.code, 0, "dump {args:?} failed: {out:#?}");
    out
}

/// Every table's checksum, sequences left out (they are compared through inserts).
fn tables_only(db: &TestDb) -> BTreeMap<String, String> {
    before_tables(&snapshot(db))
}

fn before_tables(snap: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    snap.iter()
        .filter(|(k, _)| k.starts_with("table "))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn demo_round_trip_through_dump() {
    let src = demo_db("rt_demo_src");
    load(&src, &[path_str(&demo_fixture())]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.json");
    dump_to(&src, &["-o", path_str(&file)]);
    let dst = demo_db("rt_demo_dst");
    let out = load(&dst, &[path_str(&file)]);
    assert_contains(&out.stderr, &["Loaded 44 rows into 5 tables"]);
    assert_eq!(tables_only(&dst), tables_only(&src));
    assert_eq!(snapshot(&dst), snapshot(&src), "sequences too");
    demo_inserts_succeed(&dst);

    // Two directories together (children first), from one dump split by tables.
    let d1 = dir.path().join("parents/");
    let d2 = dir.path().join("children/");
    dump_to(
        &src,
        &[
            "-t",
            "users",
            "-t",
            "clients",
            "-o",
            &format!("{}/", d1.display()),
        ],
    );
    dump_to(
        &src,
        &[
            "-t",
            "properties",
            "-t",
            "cleaning_jobs",
            "-t",
            "payments",
            "--gzip",
            "-o",
            &format!("{}/", d2.display()),
        ],
    );
    let dst2 = demo_db("rt_demo_dirs");
    let out = load(&dst2, &[path_str(&d2), path_str(&d1)]);
    assert_contains(&out.stderr, &["Loaded 44 rows into 5 tables from 5 files"]);
    assert_eq!(tables_only(&dst2), tables_only(&src));
    demo_inserts_succeed(&dst2);

    // From stdin, and as .json.gz.
    let dst3 = demo_db("rt_demo_stdin");
    let dumped = dump_to(&src, &[]).stdout;
    let out = dbf_stdin(&dst3, &["load", "-"], Some(dumped.into_bytes()));
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(tables_only(&dst3), tables_only(&src));
    let gz = dir.path().join("all.json.gz");
    dump_to(&src, &["-o", path_str(&gz)]);
    let dst4 = demo_db("rt_demo_gz");
    load(&dst4, &[path_str(&gz)]);
    assert_eq!(tables_only(&dst4), tables_only(&src));
    demo_inserts_succeed(&dst4);
}

const MANY_TYPES_SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE kitchen (
    id serial PRIMARY KEY,
    ints int[], grid int[][], texts text[], pr pair, prs pair[], m mood, moods mood[],
    d posint, jb jsonb, js json, num numeric, f8 float8, f4 real, b bytea,
    ts timestamptz, tsn timestamp, dt date, tm time, iv interval, u uuid, ip inet, cidr_ cidr,
    mac macaddr, pt point, box_ box, r int4range, tr tstzrange, bits varbit, txt text,
    ch char(3), vc varchar(10), i2 smallint, i8 bigint, bool_ bool, money_ money, tsv tsvector,
    x xml, oid_ oid
);
"#;

const MANY_TYPES_ROWS: &str = r#"
INSERT INTO kitchen VALUES
 (1, '{1,NULL,3}', '{{1,2},{3,NULL}}', ARRAY['a,b', '"q"', 'back\slash', NULL, '', 'NULL', ' sp '],
  ROW(1, 'x,y "z"'), ARRAY[ROW(1, 'a')::pair, ROW(NULL, NULL)::pair, NULL], 'happy', '{sad,ok}',
  5, '{"a": [1, null, "x"], "b": {"c": 1.50}}', '{"b": 1,  "a": [2, 3]}', 'NaN', 'Infinity', '-0',
  '\x00ff10', 'infinity', '2024-01-02 03:04:05.123456', '2024-02-29', '23:59:59.999999',
  '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24',
  '10.0.0.0/8', '08:00:2b:01:02:03', '(1.5,-2)', '((0,0),(1,1))', '[1,10)',
  '["2024-01-01 00:00:00+00","2024-02-01 00:00:00+00")', B'10110', E'tab\there\nnew "line" \\ é',
  'ab', 'short', -32768, 9223372036854775807, true, '12.34', 'a fat cat', '<a>x</a>', 4294967295),
 (2, '{}', NULL, '{}', ROW(NULL, NULL), '{}', 'sad', NULL, 1, 'null', 'null',
  '12345678901234567890.000100', '1e-300', '3.4e38', '\x', '-infinity',
  '0044-03-15 10:00:00 BC', 'infinity', '00:00', '-1 day -00:00:01', NULL, '::1', '::/0', NULL,
  '(0,0)', NULL, 'empty', '(,)', B'', '', NULL, '', 0, -9223372036854775808, false, '-0.01',
  '', NULL, 0),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, '{-1}', '{{{1}}}', '{"{}"}', ROW(-7, ''), NULL, 'ok', '{}', 2147483647,
  '{"$json": 1}', '"just a string"', '-0.000', '-1.5e-10', 'NaN', '\x5c', '2024-06-30 23:59:59.5+05:30',
  '1999-12-31 23:59:59', '-infinity', '12:00', '0', '00000000-0000-0000-0000-000000000000',
  '0.0.0.0', '192.168.100.128/25', 'ff:ff:ff:ff:ff:ff', '(-0.5,1e10)', '((-1,-1),(1,1))', '(,5]',
  '[2024-01-01 00:00:00+00,)', B'1', '{"looks": "like json"}', 'xyz', 'ten chars!', 1, 1, true, '0',
  'b:1', '<r/>', 1);
"#;

#[test]
fn many_types_round_trip_through_dump() {
    let src = TestDb::new("rt_types_src");
    src.sql(&crate::support::xml_or_text(&src, MANY_TYPES_SCHEMA));
    src.sql(MANY_TYPES_ROWS);
    src.sql("SELECT setval('kitchen_id_seq', 4)");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kitchen.json");
    dump_to(&src, &["-o", path_str(&file)]);
    let text = fs::read_to_string(&file).unwrap();

    let dst = TestDb::new("rt_types_dst");
    dst.sql(&crate::support::xml_or_text(&dst, MANY_TYPES_SCHEMA));
    let out = load(&dst, &[path_str(&file)]);
    assert_contains(&out.stderr, &["Loaded 4 rows into 1 table"]);
    // Column by column, so a failure names the type that did not survive.
    let cols: Vec<String> = serde_json::from_str(&scalar(
        &src,
        "SELECT json_agg(attname ORDER BY attnum)::text FROM pg_attribute \
         WHERE attrelid = 'kitchen'::regclass AND attnum > 0 AND NOT attisdropped",
    ))
    .unwrap();
    for c in &cols {
        let q = format!(
            "SELECT string_agg(id || '=' || coalesce(quote_literal({0}::text), 'NULL'), ' ' ORDER BY id) FROM kitchen",
            ident(c)
        );
        assert_eq!(
            dst.query_scalar(&q),
            src.query_scalar(&q),
            "column {c} differs after the round trip; the fixture was:\n{text}"
        );
    }
    assert_eq!(tables_only(&dst), tables_only(&src));
    // JSON null and SQL NULL stay apart.
    assert_eq!(
        scalar(&dst, "SELECT string_agg(id || ':' || (jb IS NULL) || ':' || coalesce(jb::text, '-'), ' ' ORDER BY id) FROM kitchen WHERE id IN (2, 3)"),
        "2:false:null 3:true:-"
    );
    // Every sequence is safe.
    assert_eq!(
        int(&dst, "INSERT INTO kitchen DEFAULT VALUES RETURNING id"),
        5
    );

    // And loading the dump again (upsert) finds every row unchanged.
    let out = load(&dst, &[path_str(&file)]);
    assert_contains(&out.stderr, &["(0 inserted, 0 updated, 4 unchanged)"]);
}

#[test]
fn hstore_round_trip_through_dump() {
    let schema = "CREATE EXTENSION IF NOT EXISTS hstore; \
                  CREATE TABLE h (id int PRIMARY KEY, v hstore)";
    let src = TestDb::new("rt_hstore_src");
    src.sql(schema);
    src.sql(
        r#"INSERT INTO h VALUES (1, '"a"=>"1", "b"=>NULL, "c d"=>"e\"f", "\\"=>"x"'),
           (2, ''), (3, NULL)"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("h.json");
    dump_to(&src, &["-o", path_str(&file)]);
    let dst = TestDb::new("rt_hstore_dst");
    dst.sql(schema);
    load(&dst, &[path_str(&file)]);
    assert_eq!(tables_only(&dst), tables_only(&src));
    let out = load(&dst, &[path_str(&file)]);
    assert_contains(&out.stderr, &["(0 inserted, 0 updated, 3 unchanged)"]);
    // Hand-written: a "$json" key is written wrapped, like the dump does.
    let dir2 = tempfile::tempdir().unwrap();
    let f = write(
        dir2.path(),
        "h.json",
        r#"{"h": [{"id": 4, "v": {"$json": {"$json": "x"}}}, {"id": 1, "v": {"a": "2"}}]}"#,
    );
    let out = load(&dst, &[path_str(&f)]);
    assert_contains(&out.stderr, &["(1 inserted, 1 updated, 0 unchanged)"]);
    assert_eq!(
        scalar(
            &dst,
            "SELECT string_agg(id || ':' || v::text, ' ' ORDER BY id) FROM h WHERE id IN (1, 4)"
        ),
        r#"1:"a"=>"2" 4:"$json"=>"x""#
    );
}

#[test]
fn rows_without_columns_take_every_default() {
    let db = TestDb::new("empty_rows");
    db.sql(
        "CREATE TABLE counter (id serial PRIMARY KEY, n int NOT NULL DEFAULT 0, \
         at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE nocols ();",
    );
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "e.json",
        r#"{"counter": [{}, {}, {"n": 5}, {}], "nocols": [{}, {}]}"#,
    );
    let out = load(&db, &[path_str(&f)]);
    assert_contains(
        &out.stderr,
        &["Loaded 6 rows into 2 tables from 1 file (6 inserted"],
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT string_agg(id || ':' || n, ' ' ORDER BY id) FROM counter"
        ),
        "1:0 2:0 3:5 4:0"
    );
    assert_eq!(int(&db, "SELECT count(*) FROM nocols"), 2);
    // Upsert again: rows without a key are matched as identical rows.
    let snap = snapshot(&db);
    let out = load(&db, &[path_str(&f)]);
    assert_contains(&out.stderr, &["(0 inserted, 0 updated, 6 unchanged)"]);
    assert_eq!(snapshot(&db), snap);
    // Insert mode adds them again; the sequence follows.
    load(&db, &["--mode", "insert", path_str(&f)]);
    assert_eq!(int(&db, "SELECT count(*) FROM counter"), 8);
    assert_eq!(
        int(&db, "INSERT INTO counter DEFAULT VALUES RETURNING id"),
        9
    );
}

// ---------------------------------------------------------------------------------------------
// Library API

#[test]
fn library_load_twice_and_inside_a_callers_transaction() {
    let db = demo_db("library_api");
    let demo = vec![demo_fixture()];
    let mut conn = db.conn();
    let opts = LoadOptions::default();
    let first = load_paths(&mut conn, &demo, &opts, &NoProgress).unwrap();
    assert_eq!((first.rows(), first.inserted(), first.files), (44, 44, 1));
    assert_eq!(first.sequences.changes.len(), 5);
    let second = load_paths(&mut conn, &demo, &opts, &NoProgress).unwrap();
    assert_eq!(
        (second.inserted(), second.updated(), second.unchanged()),
        (0, 0, 44)
    );

    // Inside the caller's transaction: the load is a savepoint; the caller decides.
    let dir = tempfile::tempdir().unwrap();
    let extra = vec![write(
        dir.path(),
        "extra.json",
        r#"{"users": [{"id": 30, "email": "thirty@example.com", "full_name": "Thirty"}]}"#,
    )];
    let bad = vec![write(
        dir.path(),
        "bad.json",
        r#"{"users": [{"email": "x@example.com", "full_name": null}]}"#,
    )];
    let before = snapshot(&db);
    let r: Result<(), Error> = conn.transaction(TxMode::ReadWrite, |c| {
        let rep = load_paths(c, &extra, &opts, &NoProgress)?;
        assert_eq!(rep.inserted(), 1);
        Err(Error::Invalid("caller rolls back".into()))
    });
    assert!(r.is_err());
    // The caller's rollback undoes the rows; the realigned sequence stays ahead (setval is not
    // transactional in PostgreSQL), which is safe.
    assert_eq!(tables_only(&db), before_tables(&before));
    assert_eq!(int(&db, "SELECT nextval('users_id_seq')"), 31);
    db.sql("SELECT setval('users_id_seq', 4)");

    let mut seen_error = String::new();
    conn.transaction(TxMode::ReadWrite, |c| {
        // A failing load inside: the caller's transaction goes on.
        let e = load_paths(c, &bad, &opts, &NoProgress).unwrap_err();
        seen_error = e.to_string();
        let rep = load_paths(c, &extra, &opts, &NoProgress)?;
        assert_eq!(rep.inserted(), 1);
        // Dry runs inside: a failing one (existing keys in insert mode) and a succeeding one.
        let dry = |mode| LoadOptions {
            dry_run: true,
            mode,
            ..Default::default()
        };
        let e = load_paths(c, &demo, &dry(Mode::Insert), &NoProgress).unwrap_err();
        assert!(e.to_string().contains("duplicate key"), "{e}");
        let more = vec![write(
            dir.path(),
            "more.json",
            r#"{"users": [{"email": "dry@example.com", "full_name": "Dry"}]}"#,
        )];
        let rep = load_paths(c, &more, &dry(Mode::Upsert), &NoProgress)?;
        assert!(rep.dry_run);
        assert_eq!(rep.inserted(), 1);
        Ok(())
    })
    .unwrap();
    assert_contains(
        &seen_error,
        &["bad.json", "table users", "row 0", "full_name"],
    );
    assert_eq!(
        scalar(&db, "SELECT full_name FROM users WHERE id = 30"),
        "Thirty"
    );
    assert_eq!(int(&db, "SELECT count(*) FROM users"), 5);
    demo_inserts_succeed(&db);
}

#[test]
fn replace_never_empties_inheritance_children() {
    let db = TestDb::new("replace_inherit_test");
    db.sql(
        "CREATE TABLE parent (id serial PRIMARY KEY, name text);
         CREATE TABLE child (extra int) INHERITS (parent);
         INSERT INTO parent (name) VALUES ('p1');
         INSERT INTO child (name, extra) VALUES ('c1', 1), ('c2', 2);",
    );
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "p.json",
        r#"{"parent": [{"id": 10, "name": "x"}]}"#,
    );
    load(&db, &["--mode", "replace", path_str(&f)]);
    assert_eq!(int(&db, "SELECT count(*) FROM ONLY parent"), 1);
    assert_eq!(scalar(&db, "SELECT name FROM ONLY parent"), "x");
    assert_eq!(
        int(&db, "SELECT count(*) FROM child"),
        2,
        "the child table is not in the fixture"
    );
}
