//! Constraints built after the data (issue 12): a load into empty tables drops their foreign
//! keys and plain indexes, copies the rows, and recreates them exactly. Proved by
//! `pg_dump --schema-only` before and after (byte-identical), by a violated key still named at
//! its file/table/row/column with nothing changed, and by the fallbacks (not the owner, a table
//! that already has rows, `--no-defer-constraints`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{dbf, Out, TestDb};

/// Rows per table: above the threshold (1000) at which constraints are built after the data.
const N: usize = 1500;

/// `pg_dump --schema-only` of the database: the proof that the schema came back identical.
fn schema_dump(db: &TestDb) -> String {
    let out = Command::new("pg_dump")
        .args(["--schema-only", "--no-owner", "--dbname"])
        .arg(db.url())
        .output()
        .expect("pg_dump runs (postgresql-client installed)");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Recent pg_dump versions frame the script with a random \restrict key: not schema.
    String::from_utf8(out.stdout)
        .expect("UTF-8 dump")
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn load(db: &TestDb, args: &[&str]) -> Out {
    let mut all = vec!["load"];
    all.extend_from_slice(args);
    dbf(db, &all)
}

/// Every kind of object the rebuild must bring back exactly.
const SCHEMA: &str = r#"
CREATE SCHEMA other;
CREATE TABLE authors (id int PRIMARY KEY, name text NOT NULL, mentor_id int,
    CONSTRAINT authors_mentor_fk FOREIGN KEY (mentor_id) REFERENCES authors (id));
CREATE TABLE books (
    id int PRIMARY KEY,
    author_id int NOT NULL,
    editor_id int,
    code text,
    title text NOT NULL,
    CONSTRAINT books_code_key UNIQUE (code),
    CONSTRAINT books_author_fk FOREIGN KEY (author_id) REFERENCES authors (id)
        ON DELETE CASCADE ON UPDATE RESTRICT,
    CONSTRAINT books_editor_fk FOREIGN KEY (editor_id) REFERENCES authors (id)
        MATCH FULL ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED);
COMMENT ON CONSTRAINT books_author_fk ON books IS 'every book has an author';
CREATE INDEX books_author_idx ON books (author_id);
CREATE INDEX books_title_lower_idx ON books (lower(title) text_pattern_ops) WITH (fillfactor = 70);
CREATE INDEX books_editor_partial_idx ON books (editor_id) WHERE editor_id IS NOT NULL;
CREATE INDEX books_multi_idx ON books USING hash (title);
COMMENT ON INDEX books_author_idx IS 'author lookups';
ALTER TABLE books CLUSTER ON books_author_idx;
CREATE TABLE other.reviews (id int PRIMARY KEY, book_id int NOT NULL REFERENCES books (id),
    stars int NOT NULL);
CREATE INDEX reviews_book_idx ON other.reviews (book_id) INCLUDE (stars);
CREATE TABLE events (id int NOT NULL, day date NOT NULL, book_id int REFERENCES books (id),
    PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX events_book_idx ON events (book_id);
CREATE TABLE tags (id int PRIMARY KEY, event_id int NOT NULL, event_day date NOT NULL,
    FOREIGN KEY (event_id, event_day) REFERENCES events (id, day));
CREATE INDEX tags_event_idx ON tags (event_id);
"#;

/// A fixture with N rows in each table; `orphan_at`: the row of `books` given an author that
/// does not exist. Layout: `{`, then per table a `"key": [` line, one row per line, and `],`.
fn fixture(orphan_at: Option<usize>) -> String {
    let day = |i: usize| {
        if i.is_multiple_of(2) {
            "2024-03-01"
        } else {
            "2025-03-01"
        }
    };
    let null_or = |cond: bool, v: usize| if cond { v.to_string() } else { "null".into() };
    let tables: [(&str, &dyn Fn(usize) -> String); 5] = [
        ("authors", &|i| {
            format!(
                "{{\"id\": {i}, \"name\": \"a{i}\", \"mentor_id\": {}}}",
                null_or(i > 1, (i / 2).max(1))
            )
        }),
        ("books", &|i| {
            let author = if Some(i - 1) == orphan_at {
                999_999
            } else {
                i % N + 1
            };
            format!(
                "{{\"id\": {i}, \"author_id\": {author}, \"editor_id\": {}, \"code\": \"c{i}\", \"title\": \"Title {i}\"}}",
                null_or(i % 3 == 0, (i * 7) % N + 1)
            )
        }),
        ("other.reviews", &|i| {
            format!(
                "{{\"id\": {i}, \"book_id\": {}, \"stars\": {}}}",
                (i * 3) % N + 1,
                i % 5
            )
        }),
        ("events", &|i| {
            format!("{{\"id\": {i}, \"day\": \"{}\", \"book_id\": {i}}}", day(i))
        }),
        ("tags", &|i| {
            format!(
                "{{\"id\": {i}, \"event_id\": {i}, \"event_day\": \"{}\"}}",
                day(i)
            )
        }),
    ];
    let mut s = String::from("{\n");
    for (n, (key, row)) in tables.iter().enumerate() {
        writeln!(s, "\"{key}\": [").unwrap();
        for i in 1..=N {
            writeln!(s, "{}{}", row(i), if i < N { "," } else { "" }).unwrap();
        }
        s.push_str(if n + 1 < tables.len() {
            "],\n"
        } else {
            "]\n}\n"
        });
    }
    s
}

#[test]
fn schema_identical_after_a_load_that_builds_constraints_after_the_data() {
    let db = TestDb::new("defer_schema");
    db.sql(SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "all.json", &fixture(None));
    let before = schema_dump(&db);
    let out = load(&db, &["--verbose", f.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("built after the data:")
            && out.stderr.contains("books")
            && out.stderr.contains("other.reviews")
            && out.stderr.contains("tags"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "events: constraints checked row by row: indexes kept: the table is partitioned"
        ),
        "{}",
        out.stderr
    );
    let after = schema_dump(&db);
    assert_eq!(before, after, "schema changed by the load");
    assert_eq!(
        db.query_scalar("SELECT count(*) FROM books").as_deref(),
        Some(&*N.to_string())
    );
    assert_eq!(
        db.query_scalar("SELECT count(*) FROM tags").as_deref(),
        Some(&*N.to_string())
    );
    // The rebuilt keys are real: a violation is refused, the cascade still cascades.
    let bad = db.try_sql("INSERT INTO books VALUES (999999, 424242, NULL, 'x', 't')");
    assert!(
        bad.as_ref().is_err_and(|e| e.contains("books_author_fk")),
        "{bad:?}"
    );
    // The deferrable key is still deferrable, and MATCH FULL still refuses a half-null key.
    assert_eq!(
        db.query_scalar(
            "SELECT condeferrable AND condeferred FROM pg_constraint WHERE conname = 'books_editor_fk'"
        )
        .as_deref(),
        Some("true")
    );
    // A second load (an upsert of the same rows into full tables) changes nothing and keeps
    // every constraint where it is.
    let again = load(&db, &["--verbose", f.to_str().unwrap()]);
    assert_eq!(again.code, 0, "{again:#?}");
    assert!(
        !again.stderr.contains("built after the data"),
        "{}",
        again.stderr
    );
    assert!(
        again
            .stderr
            .contains("books: constraints checked row by row: the table already has rows"),
        "{}",
        again.stderr
    );
    assert_eq!(schema_dump(&db), before);
}

#[test]
fn replace_builds_constraints_after_the_data_and_keeps_the_schema() {
    let db = TestDb::new("defer_replace_test");
    db.sql(SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "all.json", &fixture(None));
    let first = load(&db, &[f.to_str().unwrap()]);
    assert_eq!(first.code, 0, "{first:#?}");
    let before = schema_dump(&db);
    let out = load(
        &db,
        &["--mode", "replace", "--verbose", f.to_str().unwrap()],
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("built after the data:"),
        "{}",
        out.stderr
    );
    assert_eq!(schema_dump(&db), before);
}

#[test]
fn violated_foreign_key_found_after_the_data_names_the_row_and_changes_nothing() {
    let db = TestDb::new("defer_violation");
    db.sql(SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    // Row 1234 of books (0-based) references author 999999.
    let f = write(dir.path(), "bad.json", &fixture(Some(1234)));
    let schema = schema_dump(&db);
    let data = crate::support::db_state(&db);
    let out = load(&db, &[f.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:#?}");
    // authors: N rows + 2 lines ("{", "\"authors\": ["), then "],", "\"books\": [": the row is
    // on line N + 4 + 1234 + 1.
    let line = N + 4 + 1234 + 1;
    for part in [
        format!("bad.json:{line}"),
        "table books".to_string(),
        "row 1234 (id=1235)".to_string(),
        "column author_id".to_string(),
        "foreign key constraint \"books_author_fk\"".to_string(),
        "(author_id)=(999999)".to_string(),
    ] {
        assert!(
            out.stderr.contains(&part),
            "missing {part:?} in {}",
            out.stderr
        );
    }
    assert_eq!(schema_dump(&db), schema);
    assert_eq!(crate::support::db_state(&db), data);
}

#[test]
fn dry_run_leaves_schema_and_data() {
    let db = TestDb::new("defer_dry_run");
    db.sql(SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "all.json", &fixture(None));
    let schema = schema_dump(&db);
    let out = load(&db, &["--dry-run", f.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(schema_dump(&db), schema);
    assert_eq!(
        db.query_scalar("SELECT count(*) FROM books").as_deref(),
        Some("0")
    );
}

#[test]
fn no_defer_constraints_loads_row_by_row() {
    let db = TestDb::new("defer_off");
    db.sql(SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "all.json", &fixture(None));
    let schema = schema_dump(&db);
    let out = load(
        &db,
        &["--no-defer-constraints", "--verbose", f.to_str().unwrap()],
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        !out.stderr.contains("built after the data"),
        "{}",
        out.stderr
    );
    assert_eq!(schema_dump(&db), schema);
    assert_eq!(
        db.query_scalar("SELECT count(*) FROM other.reviews")
            .as_deref(),
        Some(&*N.to_string())
    );
}

#[test]
fn a_role_that_owns_none_of_the_tables_falls_back_and_says_so() {
    let db = TestDb::new("defer_not_owner");
    db.sql(SCHEMA);
    let role = format!("dbf_perf_loader_{}", std::process::id());
    db.sql(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN;
         GRANT USAGE ON SCHEMA public, other TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE, REFERENCES ON ALL TABLES IN SCHEMA public, other TO {role};"
    ));
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "all.json", &fixture(None));
    let schema = schema_dump(&db);
    let mut url = url::Url::parse(&db.url()).unwrap();
    url.set_username(&role).unwrap();
    let out = Out::from(
        crate::support::cmd()
            .args(["load", "--verbose", f.to_str().unwrap(), "--database-url"])
            .arg(url.as_str())
            .output()
            .unwrap(),
    );
    let after = schema_dump(&db);
    let cleanup = format!("DROP OWNED BY {role}; DROP ROLE {role};");
    db.sql(&cleanup);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        !out.stderr.contains("built after the data"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("books: constraints checked row by row: the role does not own the table"),
        "{}",
        out.stderr
    );
    assert_eq!(after, schema);
    assert_eq!(
        db.query_scalar("SELECT count(*) FROM tags").as_deref(),
        Some(&*N.to_string())
    );
}
