//! `dump -j N` (issue 12): tables read on N connections sharing one exported snapshot, written
//! to the same bytes as `-j 1`; consistent across tables while the application writes; SQLite
//! accepts `-j` and reads in its one snapshot.

use std::sync::atomic::{AtomicBool, Ordering};

use diesel::connection::SimpleConnection;
use diesel::Connection as _;

use crate::support::{cmd, dbf, TestDb};

const SCHEMA: &str = r#"
CREATE SCHEMA s;
CREATE TABLE a (id int PRIMARY KEY, v text);
CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a (id), tags text[], doc jsonb);
CREATE TABLE s.no_key (x int, y text);
CREATE TABLE empty_one (id int PRIMARY KEY);
CREATE TABLE c (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), n numeric);
INSERT INTO a SELECT i, 'v' || i FROM generate_series(1, 3000) i;
INSERT INTO b SELECT i, i, ARRAY['t' || i, NULL], jsonb_build_object('k', i) FROM generate_series(1, 3000) i;
INSERT INTO s.no_key SELECT i % 7, 'y' || i FROM generate_series(1, 500) i;
INSERT INTO c (n, at) SELECT i / 3.0, '2024-01-01'::timestamptz + i * interval '1 minute' FROM generate_series(1, 2000) i;
"#;

fn dump_bytes(db: &TestDb, args: &[&str]) -> String {
    let mut all = vec!["dump"];
    all.extend_from_slice(args);
    let out = dbf(db, &all);
    assert_eq!(out.code, 0, "dump {args:?}: {out:#?}");
    out.stdout
}

#[test]
fn parallel_dump_writes_the_same_bytes_as_a_serial_one() {
    let db = TestDb::new("parallel_dump_same");
    db.sql(SCHEMA);
    let serial = dump_bytes(&db, &[]);
    assert!(serial.contains("\"s.no_key\": ["), "{}", &serial[..200]);
    for jobs in ["2", "3", "8"] {
        assert_eq!(dump_bytes(&db, &["-j", jobs]), serial, "-j {jobs}");
    }
    assert_eq!(
        dump_bytes(&db, &["-j", "2", "--pretty"]),
        dump_bytes(&db, &["--pretty"])
    );
    // One table, and none at all.
    assert_eq!(
        dump_bytes(&db, &["-j", "4", "--table", "b"]),
        dump_bytes(&db, &["--table", "b"])
    );
    // A file output (also gzip) holds the same bytes.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("out.json");
    let out = dbf(&db, &["dump", "-j", "2", "-o", f.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), serial);
    assert!(
        out.stderr.contains("Dumped 8500 rows from 5 tables"),
        "{}",
        out.stderr
    );
    // -j 0 is refused.
    let zero = dbf(&db, &["dump", "-j", "0"]);
    assert_eq!(zero.code, 2, "{zero:#?}");
}

#[test]
fn parallel_dump_reads_one_snapshot_while_the_application_writes() {
    let db = TestDb::new("parallel_dump_writes");
    db.sql(SCHEMA);
    let url = db.url();
    let stop = AtomicBool::new(false);
    /// Stops the writer however the scope ends (a failed assertion included).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        // Each transaction adds a row to a and its child to b, and bumps c: in any snapshot a
        // and b hold the same ids.
        let writer = scope.spawn(|| {
            let mut c = diesel::pg::PgConnection::establish(&url).unwrap();
            let mut i = 100_000;
            while !stop.load(Ordering::Relaxed) {
                c.batch_execute(&format!(
                    "BEGIN; INSERT INTO a VALUES ({i}, 'w'); INSERT INTO b (id, a_id) VALUES ({i}, {i});
                     UPDATE c SET n = n + 1 WHERE id = {}; COMMIT;",
                    i % 2000 + 1
                ))
                .unwrap();
                i += 1;
            }
            i - 100_000
        });
        let guard = StopOnDrop(&stop);
        for _ in 0..4 {
            let out = dump_bytes(&db, &["-j", "3", "--table", "a", "--table", "b"]);
            let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
            let ids = |t: &str| -> Vec<i64> {
                doc[t]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_i64().unwrap())
                    .collect()
            };
            assert_eq!(ids("a"), ids("b"), "a and b read at different instants");
        }
        drop(guard);
        let written = writer.join().unwrap();
        assert!(written > 0, "the writer wrote nothing during the dumps");
    });
    // Once the writes stop, parallel and serial agree byte for byte again.
    assert_eq!(dump_bytes(&db, &["-j", "2"]), dump_bytes(&db, &[]));
}

#[test]
fn sqlite_accepts_jobs_and_dumps_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sqlite3");
    let mut c = diesel::sqlite::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    c.batch_execute(
        "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a (id));
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
         INSERT INTO a SELECT i, 'v' || i FROM n;
         INSERT INTO b SELECT id, id FROM a;",
    )
    .unwrap();
    drop(c);
    let url = format!("sqlite://{}", path.display());
    let run = |args: &[&str]| {
        let out = cmd()
            .arg("dump")
            .args(args)
            .args(["--database-url", &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let serial = run(&[]);
    assert!(serial.contains("\"b\": ["));
    assert_eq!(run(&["-j", "4"]), serial);
}
