//! Concurrent loads (issue 13, point 4): several `dbfixtures load` processes with overlapping
//! fixture sets into one database at once, while an application-like writer inserts rows with
//! default ids. Loads take their table locks up front in one global order (load/pg.rs), so none
//! deadlocks (checked: without the up-front locks, the two `labels` sets deadlock within a
//! round or two); afterwards every sequence is safe, every load's rows are all there with their
//! values, and every row the writer committed is there too, none overwritten.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use diesel::connection::SimpleConnection;
use diesel::Connection as _;

use crate::support::{dbf, TestDb};

const SCHEMA: &str = "
CREATE TABLE authors (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE books (id serial PRIMARY KEY, author_id int REFERENCES authors, title text NOT NULL);
CREATE TABLE tags (id bigserial PRIMARY KEY, label text NOT NULL UNIQUE);
CREATE TABLE book_tags (book_id int REFERENCES books, tag_id bigint REFERENCES tags,
                        PRIMARY KEY (book_id, tag_id));
CREATE TABLE labels (code text PRIMARY KEY, v text NOT NULL);
";

/// Fixture rows use ids from 1000 on; the writer's first ids are far below, so the two never
/// meet unless a sequence is left behind the loaded rows.
fn write_sets(dir: &Path) -> Vec<PathBuf> {
    let authors = |r: std::ops::Range<i32>| -> String {
        r.map(|i| format!("{{\"id\": {i}, \"name\": \"author {i}\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let books = |r: std::ops::Range<i32>| -> String {
        r.map(|i| {
            format!(
                "{{\"id\": {i}, \"author_id\": {}, \"title\": \"book {i}\"}}",
                1000 + i % 50
            )
        })
        .collect::<Vec<_>>()
        .join(",")
    };
    let tags = |r: std::ops::Range<i32>| -> String {
        r.map(|i| format!("{{\"id\": {i}, \"label\": \"tag {i}\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let links = |r: std::ops::Range<i32>| -> String {
        r.map(|i| format!("{{\"book_id\": {i}, \"tag_id\": {}}}", 1000 + i % 20))
            .collect::<Vec<_>>()
            .join(",")
    };
    // The same keys in opposite orders: two upserts of these row by row would each hold a row
    // the other waits for (a table without a sequence: no other lock serializes them).
    let labels = |rev: bool| -> String {
        let mut codes: Vec<i32> = (0..2000).collect();
        if rev {
            codes.reverse();
        }
        codes
            .iter()
            .map(|i| format!("{{\"code\": \"c{i:05}\", \"v\": \"label {i}\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    // Overlapping sets, each table in at least two of them, listed in different orders.
    let sets = [
        format!(
            "{{\"authors\": [{}], \"books\": [{}]}}",
            authors(1000..1050),
            books(1000..1200)
        ),
        format!(
            "{{\"tags\": [{}], \"authors\": [{}]}}",
            tags(1000..1020),
            authors(1000..1050)
        ),
        format!(
            "{{\"book_tags\": [{}], \"tags\": [{}], \"books\": [{}], \"authors\": [{}]}}",
            links(1100..1200),
            tags(1000..1020),
            books(1100..1300),
            authors(1000..1050)
        ),
        format!(
            "{{\"tags\": [{}], \"book_tags\": [{}]}}",
            tags(1000..1020),
            links(1000..1100)
        ),
        format!("{{\"labels\": [{}]}}", labels(false)),
        format!("{{\"labels\": [{}]}}", labels(true)),
    ];
    sets.iter()
        .enumerate()
        .map(|(i, s)| {
            let p = dir.join(format!("set{i}.json"));
            fs::write(&p, s).unwrap();
            p
        })
        .collect()
}

#[test]
fn overlapping_loads_and_an_application_writer_at_once() {
    let db = TestDb::new("concurrent_loads");
    db.sql(SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let sets = write_sets(dir.path());
    // book_tags rows need their books and tags: the first round loads everything once.
    let out = dbf(
        &db,
        &[
            "load",
            "--quiet",
            sets[0].to_str().unwrap(),
            sets[1].to_str().unwrap(),
            sets[2].to_str().unwrap(),
            sets[4].to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{out:#?}");

    let stop = AtomicBool::new(false);
    let url = db.url();
    let (written, results) = std::thread::scope(|s| {
        // The application: one row per statement with default ids, as fast as it can.
        let writer = s.spawn(|| {
            let mut c = diesel::PgConnection::establish(&url).unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 300 {
                c.batch_execute(&format!(
                    "INSERT INTO authors (name) VALUES ('app {n}');
                     INSERT INTO books (author_id, title) VALUES (currval('authors_id_seq'), 'app {n}');
                     INSERT INTO tags (label) VALUES ('app {n}')"
                ))
                .unwrap_or_else(|e| panic!("the application's insert {n} failed: {e}"));
                n += 1;
            }
            n
        });
        // Three rounds of all six sets, eighteen loads at once (upsert: overlapping rows are
        // expected, the last writer of a row wins with the same values).
        let loads: Vec<_> = (0..3)
            .flat_map(|_| sets.iter())
            .map(|p| {
                let url = url.clone();
                s.spawn(move || {
                    let out = Command::new(env!("CARGO_BIN_EXE_dbfixtures"))
                        .args(["load", "--quiet"])
                        .arg(p)
                        .arg("--database-url")
                        .arg(&url)
                        .env_remove("DATABASE_URL")
                        .stdin(Stdio::null())
                        .output()
                        .unwrap();
                    (
                        p.clone(),
                        out.status.code(),
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    )
                })
            })
            .collect();
        let results: Vec<_> = loads.into_iter().map(|h| h.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        (writer.join().unwrap(), results)
    });
    for (p, code, stderr) in &results {
        assert_eq!(*code, Some(0), "{} failed: {stderr}", p.display());
    }
    assert!(written > 0, "the writer never got a row in");

    // Every sequence is safe.
    let check = dbf(&db, &["reset-sequences", "--check"]);
    assert_eq!(check.code, 0, "{check:#?}");
    // Every load's rows are there, with the fixture's values.
    let count = |sql: &str| db.query_scalar(sql).unwrap();
    assert_eq!(
        count("SELECT count(*) FROM authors WHERE id >= 1000 AND name = 'author ' || id"),
        "50"
    );
    assert_eq!(count("SELECT count(*) FROM books WHERE id >= 1000 AND title = 'book ' || id AND author_id = 1000 + id % 50"), "300");
    assert_eq!(
        count("SELECT count(*) FROM tags WHERE id >= 1000 AND label = 'tag ' || id"),
        "20"
    );
    assert_eq!(
        count("SELECT count(*) FROM book_tags WHERE tag_id = 1000 + book_id % 20"),
        "200"
    );
    assert_eq!(
        count("SELECT count(*) FROM labels WHERE v = 'label ' || ltrim(substr(code, 2), '0')"),
        "1999"
    );
    assert_eq!(
        count("SELECT v FROM labels WHERE code = 'c00000'"),
        "label 0"
    );
    // Every application row is there, none overwritten by a load.
    for t in ["authors", "books", "tags"] {
        let col = if t == "tags" {
            "label"
        } else if t == "books" {
            "title"
        } else {
            "name"
        };
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM {t} WHERE {col} LIKE 'app %'"
            )),
            written.to_string(),
            "{t}"
        );
    }
    // And the application goes on getting fresh ids.
    assert!(db
        .query_scalar("INSERT INTO authors (name) VALUES ('after') RETURNING id")
        .is_some());
}
