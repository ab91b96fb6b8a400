//! `dump -j N` (issue 12): tables read on N connections sharing one exported snapshot, written
//! to the same bytes as `-j 1`; consistent across tables while the application writes; SQLite
//! accepts `-j` and reads in its one snapshot.

use std::path::Path;
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

/// Tables large enough to be split into key ranges (each heap over 8 MiB): a bigint key with
/// negative values and gaps, a composite key split on its first (integer) column, a text key
/// (never split), and a child table.
const LARGE: &str = r#"
CREATE TABLE big (id bigint PRIMARY KEY, pad text, at timestamptz, n numeric(10, 2), email text);
CREATE TABLE pairs (a int, b int, pad text, PRIMARY KEY (a, b));
CREATE TABLE named (name text PRIMARY KEY, pad text);
CREATE TABLE child (id int PRIMARY KEY, big_id bigint REFERENCES big (id));
INSERT INTO big SELECT i * 7 - 400000, repeat('p', 60) || i,
    timestamptz '2024-01-01' + i * interval '1 second', i / 100.0, 'u' || i || '@example.com'
    FROM generate_series(1, 120000) i;
INSERT INTO pairs SELECT i / 3, i % 3, repeat('q', 70) FROM generate_series(1, 100000) i;
INSERT INTO named SELECT 'n' || i, repeat('r', 90) FROM generate_series(1, 80000) i;
INSERT INTO child SELECT i, i * 7 - 400000 FROM generate_series(1, 5000) i;
CREATE TABLE parted (id bigint PRIMARY KEY, pad text) PARTITION BY RANGE (id);
CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (MINVALUE) TO (60000);
CREATE TABLE parted_high PARTITION OF parted FOR VALUES FROM (60000) TO (MAXVALUE);
INSERT INTO parted SELECT i, repeat('s', 80) FROM generate_series(1, 100000) i;
"#;

/// Index scans of `table` so far (a split table is read with one per key range).
fn index_scans(db: &TestDb, table: &str) -> i64 {
    db.sql("SELECT pg_stat_clear_snapshot()");
    db.query_scalar(&format!(
        "SELECT coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = '{table}'"
    ))
    .unwrap()
    .parse()
    .unwrap()
}

#[test]
fn large_tables_split_into_key_ranges_give_the_same_bytes() {
    let db = TestDb::new("parallel_dump_split");
    db.sql(LARGE);
    db.sql("ANALYZE");
    let sizes = db
        .query_scalar(
            "SELECT string_agg((pg_relation_size(c) >= 8 * 1024 * 1024)::text, ',' ORDER BY c) \
             FROM unnest(ARRAY['big', 'pairs', 'named']::regclass[]) c",
        )
        .unwrap();
    assert_eq!(
        sizes, "true,true,true",
        "the tables must be large enough to split"
    );
    let serial = dump_bytes(&db, &[]);
    let before = index_scans(&db, "big");
    let parallel = dump_bytes(&db, &["-j", "2"]);
    // Stats reach the view when the workers' sessions end; wait for them a little.
    let mut scans = index_scans(&db, "big") - before;
    for _ in 0..50 {
        if scans >= 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        scans = index_scans(&db, "big") - before;
    }
    assert!(scans >= 4, "big was read in {scans} index scans: not split");
    assert_eq!(parallel, serial);
    assert_eq!(rows_in(&serial, "big"), 120_000);
    assert_eq!(rows_in(&serial, "parted"), 100_000);
    for jobs in ["3", "8"] {
        assert_eq!(dump_bytes(&db, &["-j", jobs]), serial, "-j {jobs}");
    }
    assert_eq!(
        dump_bytes(&db, &["-j", "2", "--pretty"]),
        dump_bytes(&db, &["--pretty"])
    );
    // Masks, subsets and the Django format go through the same parts.
    let mask = ["--mask", "big.email=email", "--mask-salt", "s3cret"];
    let masked = dump_bytes(&db, &mask);
    assert!(!masked.contains("u1@example.com"));
    assert_eq!(dump_bytes(&db, &[&["-j", "2"], &mask[..]].concat()), masked);
    let subset = ["--where", "child: id <= 2500"];
    let sub = dump_bytes(&db, &subset);
    assert_eq!(rows_in(&sub, "big"), 2500);
    assert_eq!(dump_bytes(&db, &[&["-j", "2"], &subset[..]].concat()), sub);
    let full = ["--where", "child: id <= 10", "--full", "big"];
    let sub = dump_bytes(&db, &full);
    assert_eq!(rows_in(&sub, "big"), 120_000);
    assert_eq!(dump_bytes(&db, &[&["-j", "2"], &full[..]].concat()), sub);
    let django = [
        "--format",
        "django",
        "--table",
        "big",
        "--table",
        "named",
        "--django-model",
        "big=app.big",
        "--django-model",
        "named=app.named",
    ];
    assert_eq!(
        dump_bytes(&db, &[&["-j", "2"], &django[..]].concat()),
        dump_bytes(&db, &django)
    );
}

fn rows_in(dump: &str, key: &str) -> usize {
    let doc: serde_json::Value = serde_json::from_str(dump).unwrap();
    doc[key].as_array().map_or(0, Vec::len)
}

/// `-o DIR/ -j N` reads tables on N connections and writes the same files as a serial dump.
#[test]
fn directory_output_in_parallel_writes_the_same_files() {
    let db = TestDb::new("parallel_dump_dir");
    db.sql(SCHEMA);
    db.sql(LARGE);
    let dir = tempfile::tempdir().unwrap();
    let (serial, parallel) = (dir.path().join("serial"), dir.path().join("parallel"));
    for (out, jobs) in [(&serial, "1"), (&parallel, "3")] {
        let target = format!("{}/", out.display());
        let run = dbf(&db, &["dump", "-j", jobs, "-o", &target]);
        assert_eq!(run.code, 0, "{run:#?}");
        assert!(
            run.stderr.contains("from 10 tables"),
            "-j {jobs}: {}",
            run.stderr
        );
    }
    let files = |d: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(files(&serial).len(), 10);
    assert_eq!(files(&serial), files(&parallel));
    for name in files(&serial) {
        assert_eq!(
            std::fs::read(serial.join(&name)).unwrap(),
            std::fs::read(parallel.join(&name)).unwrap(),
            "{name}"
        );
    }
    // gzip too.
    let gz = dir.path().join("gz");
    let run = dbf(
        &db,
        &[
            "dump",
            "-j",
            "2",
            "--gzip",
            "-o",
            &format!("{}/", gz.display()),
        ],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(gz.join("big.json.gz")).unwrap()),
        &mut text,
    )
    .unwrap();
    assert_eq!(
        text.as_bytes(),
        std::fs::read(serial.join("big.json")).unwrap()
    );
}

/// A split table read while rows are inserted into the middle of its key ranges, each with a
/// child row in the same transaction: every dump holds both or neither of each pair.
#[test]
fn split_tables_are_read_in_one_snapshot_while_the_application_writes() {
    let db = TestDb::new("parallel_dump_split_writes");
    db.sql(LARGE);
    // Statistics saying big is stored in key order: to a file, it is read by pages.
    db.sql("ANALYZE big");
    let url = db.url();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut c = diesel::pg::PgConnection::establish(&url).unwrap();
            let mut k = 1;
            while !stop.load(Ordering::Relaxed) && k < 100_000 {
                // Ids in the gaps of big's keys (7 apart), spread over the whole span.
                let id = (k * 7919 % 120_000) * 7 - 400_000 + 1;
                c.batch_execute(&format!(
                    "BEGIN; INSERT INTO big (id, pad) VALUES ({id}, 'w');
                     INSERT INTO child VALUES ({}, {id}); COMMIT;",
                    100_000 + k
                ))
                .unwrap();
                k += 1;
            }
            k - 1
        });
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.json");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for i in 0..4 {
                let args = ["-j", "3", "--table", "big", "--table", "child"];
                // To stdout: key ranges; to a file: pages in stored order, where the rows
                // inserted meanwhile (at the end of the heap) break key order, and big is read
                // again, in the same snapshot.
                let out = if i % 2 == 0 {
                    dump_bytes(&db, &args)
                } else {
                    let mut all = vec!["dump", "-o", file.to_str().unwrap()];
                    all.extend_from_slice(&args);
                    let out = dbf(&db, &all);
                    assert_eq!(out.code, 0, "{out:#?}");
                    std::fs::read_to_string(&file).unwrap()
                };
                let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
                let rows = |t: &str| doc[t].as_array().unwrap().clone();
                let (big, child) = (rows("big"), rows("child"));
                assert!(big.len() >= 120_000);
                assert_eq!(
                    big.len() - 120_000,
                    child.len() - 5_000,
                    "big and child read at different instants"
                );
                let ids: std::collections::HashSet<i64> =
                    big.iter().map(|r| r["id"].as_i64().unwrap()).collect();
                assert_eq!(ids.len(), big.len(), "a row read twice");
                let keys: Vec<i64> = big.iter().map(|r| r["id"].as_i64().unwrap()).collect();
                assert!(
                    keys.windows(2).all(|w| w[0] < w[1]),
                    "rows out of key order"
                );
                assert!(child
                    .iter()
                    .all(|r| ids.contains(&r["big_id"].as_i64().unwrap())));
            }
        }));
        stop.store(true, Ordering::Relaxed);
        let written = writer.join().unwrap();
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
        assert!(written > 0, "the writer wrote nothing during the dumps");
    });
    assert_eq!(dump_bytes(&db, &["-j", "2"]), dump_bytes(&db, &[]));
}

/// `dump -j N -o FILE` reads large tables whose statistics say they are stored in key order by
/// ranges of pages in stored order (cheaper for the server than following the key's index), and
/// checks that each part continues key order. A table whose rows are not stored in key order
/// after all (rows moved by updates since the last ANALYZE) is cut off the file and read again
/// in key order: the bytes are the serial dump's either way. A table whose statistics show it
/// out of order, and any large table dumped to stdout (which cannot go back), are read by key
/// ranges through the index.
#[test]
fn parallel_dump_to_a_file_reads_pages_and_reads_again_a_table_stored_out_of_key_order() {
    let db = TestDb::new("parallel_dump_pages");
    db.sql(
        "-- t: in key order but for two neighbours on one page, which neither the statistics
         -- nor the probe of a few pages can see.
         CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT CASE g WHEN 100000 THEN 100001 WHEN 100001 THEN 100000 ELSE g END,
                              repeat('x', 30) || g FROM generate_series(1, 200000) g;
         -- u: in key order.
         CREATE TABLE u (id bigint PRIMARY KEY, v text);
         INSERT INTO u SELECT g, repeat('y', 30) || g FROM generate_series(1, 200000) g;
         -- w: rows moved before ANALYZE (full pages: new versions go to the end of the heap).
         CREATE TABLE w (id bigint PRIMARY KEY, v text);
         INSERT INTO w SELECT g, repeat('z', 30) || g FROM generate_series(1, 200000) g;
         UPDATE w SET v = v || '!' WHERE id % 1000 = 0;
         -- m: rows moved after ANALYZE.
         CREATE TABLE m (id bigint PRIMARY KEY, v text);
         INSERT INTO m SELECT g, repeat('m', 30) || g FROM generate_series(1, 200000) g;
         -- f: freshly loaded in key order, never analyzed.
         CREATE TABLE f (id bigint PRIMARY KEY, v text) WITH (autovacuum_enabled = off);
         INSERT INTO f SELECT g, repeat('f', 30) || g FROM generate_series(1, 200000) g;",
    );
    db.sql("VACUUM ANALYZE t, u, w, m");
    db.sql("UPDATE m SET v = v || '!' WHERE id % 1000 = 0");
    // The dump reads m's update counters: flush this session's now, not a second or more later.
    db.sql("SELECT pg_stat_force_next_flush()");
    let int = |sql: &str| -> i64 {
        db.query_scalar(sql)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no integer from {sql}"))
    };
    // All are split (8 MiB of heap or more).
    for table in ["t", "u", "w", "m", "f"] {
        assert!(int(&format!("SELECT pg_relation_size('{table}')")) >= 8 << 20);
    }
    let out_of_order = "SELECT count(*) FROM (SELECT id, lag(id) OVER (ORDER BY ctid) AS p \
                        FROM {}) x WHERE id < p";
    for (table, broken) in [("t", 1), ("u", 0), ("w", 1), ("m", 1), ("f", 0)] {
        assert_eq!(int(&out_of_order.replace("{}", table)), broken, "{table}");
    }
    assert_eq!(
        int("SELECT count(DISTINCT (ctid::text::point)[0]) FROM t WHERE id IN (100000, 100001)"),
        1,
        "t's swapped neighbours are on one page"
    );
    let in_order = "SELECT (correlation >= 0.99999)::int FROM pg_stats \
                    WHERE tablename = '{}' AND attname = 'id'";
    assert_eq!(int(&in_order.replace("{}", "t")), 1);
    assert_eq!(int(&in_order.replace("{}", "m")), 1);
    assert_eq!(int(&in_order.replace("{}", "w")), 0);
    assert_eq!(
        int("SELECT count(*) FROM pg_stats WHERE tablename = 'f'"),
        0
    );
    // Index and sequential scans by table, once the dump's server processes have ended (which
    // is when they report their counts). Pages are read by neither (TID range scans); key
    // ranges each use the index; the whole table in key order takes one or the other.
    let index_scans = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while int("SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND pid <> pg_backend_pid()")
            > 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the dump's sessions linger"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        db.sql("SELECT pg_stat_clear_snapshot()");
        ["t", "u", "w", "m", "f"].map(|t| {
            int(&format!(
                "SELECT idx_scan + seq_scan FROM pg_stat_user_tables WHERE relname = '{t}'"
            ))
        })
    };
    let serial = dump_bytes(&db, &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.json");
    let before = index_scans();
    // -j 1: the serial dump reads pages in stored order too.
    for jobs in ["1", "2", "3"] {
        let out = dbf(&db, &["dump", "-j", jobs, "-o", file.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{out:#?}");
        // t's rows counted once, though some of its parts were read twice.
        assert!(
            out.stderr.contains("Dumped 1000000 rows from 5 tables"),
            "{}",
            out.stderr
        );
        // t's pages gave its rows out of key order, yet the file is the serial dump's.
        assert!(
            std::fs::read_to_string(&file).unwrap() == serial,
            "-j {jobs} to a file differs from the serial dump"
        );
    }
    let [t, u, w, m, f] = index_scans();
    assert_eq!(u, before[1], "u was not read by pages");
    assert_eq!(f, before[4], "f (never analyzed) was not read by pages");
    assert!(w >= before[2] + 8, "w was not read by key ranges");
    assert!(
        m >= before[3] + 8,
        "m (moved after ANALYZE) was not read by key ranges"
    );
    // t: by pages, then once again in key order (through its index or not) in each run.
    assert!(t <= before[0] + 3, "t was read by key ranges, not by pages");
    // To stdout: key ranges through the index, the same bytes.
    assert!(
        dump_bytes(&db, &["-j", "2"]) == serial,
        "-j 2 to stdout differs"
    );
    assert!(
        index_scans()[1] > u,
        "u was not read by key ranges to stdout"
    );
}

/// Runs `dump -j 2 ARGS` and, once the dump holds its lock on z_small, queues a migration's
/// `ALTER TABLE z_small ADD COLUMN <column> int` behind it; returns the dump's output once both
/// are done. Fails the test if the dump hangs behind the ALTER queued on its own lock.
fn dump_with_ddl_queued(db: &TestDb, args: &[&str], column: &str) -> crate::support::Out {
    let mut all = vec!["dump", "-j", "2", "--database-url"];
    let url = db.url();
    all.push(&url);
    all.extend_from_slice(args);
    let all: Vec<String> = all.iter().map(|a| a.to_string()).collect();
    let dump = std::thread::spawn(move || {
        crate::support::Out::from(cmd().args(&all).output().expect("run dbfixtures"))
    });
    let locked = "SELECT count(*) FROM pg_locks WHERE relation = 'z_small'::regclass \
                  AND mode = 'AccessShareLock' AND granted";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while db.query_scalar(locked).as_deref() == Some("0") {
        assert!(
            std::time::Instant::now() < deadline && !dump.is_finished(),
            "the dump never locked z_small"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let mut ddl = diesel::pg::PgConnection::establish(&db.url()).expect("ddl connects");
    let sql = format!("ALTER TABLE z_small ADD COLUMN {column} int");
    let alter = std::thread::spawn(move || ddl.batch_execute(&sql).map_err(|e| e.to_string()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dump.is_finished() {
        if std::time::Instant::now() > deadline {
            db.sql(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
                 WHERE query LIKE 'ALTER TABLE z_small%'",
            );
            panic!("the parallel dump hung behind the ALTER queued on its own locks");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = dump.join().unwrap();
    alter
        .join()
        .unwrap()
        .expect("the ALTER runs once the dump is over");
    out
}

/// The leading connection locks every table for the whole dump, as pg_dump does. A DDL request
/// that arrives meanwhile (a migration's ALTER TABLE) queues behind that lock, and a worker that
/// then asks for the same table would queue behind the ALTER: a wait cycle through the client
/// that the server cannot see. The worker gives up within a moment and leaves the table to the
/// leading connection, which holds its lock: the dump completes with the bytes of a serial
/// dump, says which table it read that way, and the ALTER runs once it is over. To stdout (key
/// ranges), to a file (pages) and to a directory (one file per table).
#[test]
fn parallel_dump_leaves_a_table_locked_by_queued_ddl_to_the_leading_connection() {
    let db = TestDb::new("parallel_dump_ddl");
    // a_big and b_big are dumped first (in several parts each, about 25 MB of heap each, or
    // whole by the two workers of a directory dump); z_small last.
    db.sql(
        "CREATE TABLE a_big (id int PRIMARY KEY, pad text);
         INSERT INTO a_big SELECT g, repeat('p', 60) FROM generate_series(1, 300000) g;
         CREATE TABLE b_big (id int PRIMARY KEY, pad text);
         INSERT INTO b_big SELECT g, repeat('q', 60) FROM generate_series(1, 300000) g;
         CREATE TABLE z_small (id int PRIMARY KEY);
         INSERT INTO z_small SELECT generate_series(1, 10);",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut column = 0;
    // The ALTER is queued while the workers read the big tables; should they reach z_small
    // before (a slow test machine), the run proves nothing and is repeated, up to three times.
    let mut runs = |mode: &str| {
        for _ in 0..3 {
            column += 1;
            let serial = dir.path().join(format!("serial{column}"));
            let parallel = dir.path().join(format!("parallel{column}"));
            let target = |p: &Path| -> Vec<String> {
                match mode {
                    "stdout" => vec![],
                    "file" => vec!["-o".into(), p.display().to_string()],
                    _ => vec!["-o".into(), format!("{}/", p.display())],
                }
            };
            let bytes = |out: &crate::support::Out, p: &Path| -> Vec<u8> {
                match mode {
                    "stdout" => out.stdout.as_bytes().to_vec(),
                    "file" => std::fs::read(p).unwrap(),
                    _ => ["a_big", "b_big", "z_small"]
                        .iter()
                        .flat_map(|t| std::fs::read(p.join(format!("{t}.json"))).unwrap())
                        .collect(),
                }
            };
            let args = target(&serial);
            let mut all = vec!["dump"];
            all.extend(args.iter().map(String::as_str));
            let one = dbf(&db, &all);
            assert_eq!(one.code, 0, "{one:#?}");
            let args = target(&parallel);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let two = dump_with_ddl_queued(&db, &args, &format!("extra{column}"));
            assert_eq!(two.code, 0, "{mode}: {two:#?}");
            assert!(
                bytes(&one, &serial) == bytes(&two, &parallel),
                "{mode}: -j 2 differs from -j 1"
            );
            if two
                .stderr
                .contains("z_small: read on the leading connection")
            {
                assert!(two.stderr.contains("lock timeout"), "{}", two.stderr);
                return;
            }
        }
        panic!("{mode}: in three runs, no worker found z_small locked behind the queued ALTER");
    };
    runs("stdout");
    runs("file");
    runs("dir");
}

/// A server that refuses the workers' connections (here: the role may hold only one) gets the
/// dump read on the leading connection alone, with the same bytes, and a note saying so.
#[test]
fn parallel_dump_reads_on_the_leading_connection_when_workers_cannot_connect() {
    let db = TestDb::new("parallel_dump_one_connection");
    db.sql(LARGE);
    let role = crate::support::AppRole::new(&db, "dump_one_connection");
    db.sql(&format!(
        "ALTER ROLE {} CONNECTION LIMIT 1",
        crate::support::ident(role.name())
    ));
    let tables = ["--table", "big", "--table", "named", "--table", "child"];
    let as_role = |args: &[&str]| {
        role.wait_until_disconnected();
        let out = crate::support::Out::from(
            cmd()
                .args(["dump", "--database-url", &role.url()])
                .args(tables)
                .args(args)
                .output()
                .expect("run dbfixtures"),
        );
        assert_eq!(out.code, 0, "{args:?}: {out:#?}");
        out
    };
    let serial = as_role(&[]);
    assert!(
        !serial.stderr.contains("could not be opened"),
        "{}",
        serial.stderr
    );
    let parallel = as_role(&["-j", "3"]);
    assert!(parallel.stdout == serial.stdout, "-j 3 to stdout differs");
    assert!(
        parallel
            .stderr
            .contains("a parallel dump connection could not be opened; reading on fewer")
            && parallel.stderr.contains("too many connections"),
        "{}",
        parallel.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.json");
    as_role(&["-j", "2", "-o", file.to_str().unwrap()]);
    assert!(std::fs::read(&file).unwrap() == serial.stdout.as_bytes());
    let files = format!("{}/", dir.path().join("files").display());
    as_role(&["-j", "2", "-o", &files]);
    // --quiet silences the notes with everything else.
    let quiet = as_role(&["-j", "2", "--quiet"]);
    assert_eq!(quiet.stderr, "");
    assert!(quiet.stdout == serial.stdout);
    let one_table = dbf(&db, &["dump", "--table", "named"]);
    assert_eq!(one_table.code, 0, "{one_table:#?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("files/named.json")).unwrap(),
        one_table.stdout
    );
}

/// A server-side idle_in_transaction_session_timeout (managed PostgreSQL often sets one) ends
/// neither the leading connection's transaction while it waits for the workers, nor a worker's
/// while it waits for its turn: the dump keeps its snapshot and locks, as pg_dump does.
#[test]
fn parallel_dump_survives_an_idle_in_transaction_timeout() {
    let db = TestDb::new("parallel_dump_idle_timeout");
    db.sql(LARGE);
    let tables = ["--table", "big", "--table", "named", "--table", "child"];
    let dump = |args: &[&str]| {
        let mut all = vec!["dump"];
        all.extend(tables);
        all.extend(args);
        let out = dbf(&db, &all);
        assert_eq!(out.code, 0, "{args:?}: {out:#?}");
        out.stdout
    };
    let serial = dump(&[]);
    // Shorter than the leading connection's wait for its workers over the large table.
    db.sql(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET \
         idle_in_transaction_session_timeout = ''20ms''', current_database()); END $$",
    );
    assert!(dump(&[]) == serial, "-j 1 differs under the timeout");
    assert!(dump(&["-j", "2"]) == serial, "-j 2 differs");
    assert!(dump(&["-j", "3"]) == serial, "-j 3 differs");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.json");
    dump(&["-j", "2", "-o", file.to_str().unwrap()]);
    assert!(
        std::fs::read(&file).unwrap() == serial.as_bytes(),
        "-j 2 -o FILE differs"
    );
    let files = format!("{}/", dir.path().join("files").display());
    dump(&["-j", "2", "-o", &files]);
    let one_table = dbf(&db, &["dump", "--table", "named"]);
    assert_eq!(one_table.code, 0, "{one_table:#?}");
    assert!(
        std::fs::read_to_string(dir.path().join("files/named.json")).unwrap() == one_table.stdout,
        "-j 2 -o DIR/ differs"
    );
}
