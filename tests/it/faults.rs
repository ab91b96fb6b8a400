//! Faults and hostile input (issue 13, points 5 and 6): the server connection dropped in the
//! middle of a load and of a dump, a full disk (file-size limit) while writing `-o FILE`, SIGINT
//! in the middle of a load, byte-order marks and non-UTF-8 files, memory that stays flat on a
//! large single-table file, and singular/plural summaries.
//!
//! Every failure case asserts one `error:` line, exit code 2, no output file (nor a temporary
//! one) left behind, and the database state afterwards: row counts, contents and sequences as
//! before, taken after the server has ended the failed session (so a late COMMIT is ruled out).
//!
//! Timing is made deterministic with the server's help: a trigger that sleeps on one row of a
//! load, or a lock another session holds on a table the dump must read, keeps the victim busy
//! at a known point until the test strikes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::Connection as _;

use crate::support::{db_state, dbf, xml_supported, TestDb};

/// `dbfixtures ARGS --database-url URL`, started in the background from `dir`.
fn spawn(db: &TestDb, dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dbfixtures"))
        .args(args)
        .arg("--database-url")
        .arg(db.url())
        .env_remove("DATABASE_URL")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dbfixtures")
}

/// Waits for `child` (at most a minute) and returns its exit code and stderr.
fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().expect("wait for dbfixtures");
    (
        out.status.code(),
        String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    )
}

/// The pid of the one other client backend on `db` that matches `condition` (SQL over
/// pg_stat_activity), waiting up to a minute for it to appear. Panics if `child` exits first.
fn wait_for_backend(db: &TestDb, child: &mut Child, condition: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(pid) = db.query_scalar(&format!(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND {condition}"
        )) {
            return pid;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let (_, err) = finish_status(child);
            panic!("dbfixtures ended ({status}) before the fault could be injected: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "no backend with {condition} appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish_status(child: &mut Child) -> (Option<i32>, String) {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (child.try_wait().ok().flatten().and_then(|s| s.code()), err)
}

/// Waits until no other client backend is connected to `db`: the server has ended (and rolled
/// back) whatever the failed run left open.
fn wait_until_alone(db: &TestDb) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
    ) != Some("0".into())
    {
        assert!(
            Instant::now() < deadline,
            "a backend of the failed run is still there"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Exactly one line, an `error:` line, containing every one of `needles`.
fn assert_one_error(stderr: &str, needles: &[&str]) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{n:?} missing from:\n{stderr}");
    }
}

/// Files in `dir` (names), so a test can check that nothing, not even a temporary file, is left.
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A fixture of `n` rows for `items (id, name)`, ids from 1.
fn items_fixture(dir: &Path, n: usize) -> PathBuf {
    let p = dir.join("items.json");
    let mut w = std::io::BufWriter::new(fs::File::create(&p).unwrap());
    writeln!(w, "{{\"items\": [").unwrap();
    for i in 1..=n {
        let sep = if i == n { "" } else { "," };
        writeln!(w, "  {{\"id\": {i}, \"name\": \"item {i}\"}}{sep}").unwrap();
    }
    writeln!(w, "]}}").unwrap();
    p
}

/// `items` with one row already there, and a trigger that sleeps `seconds` when row 3000 goes in,
/// so a load of [`items_fixture`] is caught in the middle.
fn items_db(name: &str, seconds: u32) -> TestDb {
    let db = TestDb::new(name);
    db.sql(&format!(
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
         INSERT INTO items (name) VALUES ('existing');
         CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.id = 3000 THEN PERFORM pg_sleep({seconds}); END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER slow BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION slow_row();"
    ));
    db
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

// ---------------------------------------------------------------------------------------------
// Lost connections

#[test]
fn connection_terminated_during_a_load() {
    let db = items_db("fault_terminate_load", 60);
    let dir = tempfile::tempdir().unwrap();
    let fixture = items_fixture(dir.path(), 5000);
    let before = db_state(&db);
    let mut child = spawn(&db, dir.path(), &["load", path_str(&fixture), "--quiet"]);
    let pid = wait_for_backend(&db, &mut child, "wait_event = 'PgSleep'");
    assert_eq!(
        db.query_scalar(&format!("SELECT pg_terminate_backend({pid})"))
            .as_deref(),
        Some("true")
    );
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(2), "{stderr}");
    assert_one_error(&stderr, &["items"]);
    assert!(
        stderr.contains("terminat") || stderr.contains("closed the connection"),
        "the error says the connection was lost: {stderr}"
    );
    wait_until_alone(&db);
    assert_eq!(db_state(&db), before);
    assert_eq!(
        db.query_scalar("INSERT INTO items (name) VALUES ('app') RETURNING id")
            .as_deref(),
        Some("2")
    );
}

/// A database with two tables and a session holding the second one: a dump writes the first,
/// then waits for the lock. Returns the state before the lock (reading it afterwards would wait
/// for the lock too) and the locking connection (drop it to let go).
fn dump_blocked_db(name: &str) -> (TestDb, BTreeMap<String, String>, diesel::PgConnection) {
    let db = TestDb::new(name);
    db.sql(
        "CREATE TABLE a_first (id serial PRIMARY KEY, v text);
         INSERT INTO a_first (v) SELECT 'row ' || i FROM generate_series(1, 2000) i;
         CREATE TABLE b_second (id serial PRIMARY KEY, v text);
         INSERT INTO b_second (v) VALUES ('x');",
    );
    let before = db_state(&db);
    let mut locker = diesel::PgConnection::establish(&db.url()).unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE b_second IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    (db, before, locker)
}

const DUMP_WAITING: &str = "wait_event_type = 'Lock' AND state = 'active'";

#[test]
fn connection_terminated_during_a_dump() {
    let (db, before, locker) = dump_blocked_db("fault_terminate_dump");
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn(&db, dir.path(), &["dump", "-o", "out.json", "--quiet"]);
    let pid = wait_for_backend(&db, &mut child, DUMP_WAITING);
    db.query_scalar(&format!("SELECT pg_terminate_backend({pid})"));
    let (code, stderr) = finish(child);
    drop(locker);
    assert_eq!(code, Some(2), "{stderr}");
    assert_one_error(&stderr, &[]);
    assert!(
        stderr.contains("terminat") || stderr.contains("closed the connection"),
        "the error says the connection was lost: {stderr}"
    );
    assert_eq!(
        files_in(dir.path()),
        Vec::<String>::new(),
        "no output file, no temporary file"
    );
    wait_until_alone(&db);
    assert_eq!(db_state(&db), before);
}

#[test]
fn sigint_in_the_middle_of_a_dump_leaves_no_file() {
    let (db, before, locker) = dump_blocked_db("fault_sigint_dump");
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn(&db, dir.path(), &["dump", "-o", "out.json", "--quiet"]);
    wait_for_backend(&db, &mut child, DUMP_WAITING);
    // The temporary file is there while the dump runs...
    assert_eq!(files_in(dir.path()).len(), 1, "{:?}", files_in(dir.path()));
    interrupt(&child);
    let (code, stderr) = finish(child);
    drop(locker);
    assert_eq!(code, Some(2), "{stderr}");
    assert_one_error(&stderr, &["interrupted"]);
    // ...and gone after the interrupt.
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
    wait_until_alone(&db);
    assert_eq!(db_state(&db), before);
}

fn interrupt(child: &Child) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
}

// ---------------------------------------------------------------------------------------------
// Full disk

/// `dbfixtures ARGS` with a file-size limit of `bytes` (as `ulimit -f` sets), from `dir`.
fn run_with_file_size_limit(db: &TestDb, dir: &Path, bytes: u64, args: &[&str]) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(env!("CARGO_BIN_EXE_dbfixtures"));
    c.args(args)
        .arg("--database-url")
        .arg(db.url())
        .env_remove("DATABASE_URL")
        .current_dir(dir);
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        c.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = c.output().expect("run dbfixtures");
    let code = out.status.code().unwrap_or_else(|| {
        panic!(
            "dbfixtures was killed by a signal ({:?}) instead of reporting the full disk",
            out.status
        )
    });
    (code, String::from_utf8(out.stderr).unwrap())
}

#[test]
fn full_disk_while_writing_the_output_file() {
    let db = TestDb::new("fault_full_disk");
    db.sql(
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
         INSERT INTO items (name) SELECT repeat('x', 100) || i FROM generate_series(1, 5000) i;",
    );
    let before = db_state(&db);
    for out in ["out.json", "out.json.gz"] {
        let dir = tempfile::tempdir().unwrap();
        // 5,000 rows of 100+ bytes: well past 16 KiB, even gzipped (repeat + numbers compress,
        // so gzip gets a smaller limit).
        let limit = if out.ends_with(".gz") { 2048 } else { 16384 };
        let (code, stderr) =
            run_with_file_size_limit(&db, dir.path(), limit, &["dump", "-o", out, "--quiet"]);
        assert_eq!(code, 2, "{out}: {stderr}");
        assert_one_error(&stderr, &[out, "too large"]);
        assert_eq!(files_in(dir.path()), Vec::<String>::new(), "{out}");
    }
    assert_eq!(db_state(&db), before);
}

// ---------------------------------------------------------------------------------------------
// SIGINT

#[test]
fn sigint_in_the_middle_of_a_load() {
    // The trigger sleeps 3 s: after the interrupt the server finishes that statement, finds the
    // client gone and rolls back; the test waits for that before looking.
    let db = items_db("fault_sigint_load", 3);
    let dir = tempfile::tempdir().unwrap();
    let fixture = items_fixture(dir.path(), 5000);
    let before = db_state(&db);
    let mut child = spawn(&db, dir.path(), &["load", path_str(&fixture), "--quiet"]);
    wait_for_backend(&db, &mut child, "wait_event = 'PgSleep'");
    interrupt(&child);
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(2), "{stderr}");
    assert_one_error(&stderr, &["interrupted", "before committing anything"]);
    wait_until_alone(&db);
    assert_eq!(db_state(&db), before);
    assert_eq!(
        db.query_scalar("INSERT INTO items (name) VALUES ('app') RETURNING id")
            .as_deref(),
        Some("2")
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input

fn plain_items_db(name: &str) -> TestDb {
    let db = TestDb::new(name);
    db.sql("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)");
    db
}

#[test]
fn a_utf8_byte_order_mark_is_accepted() {
    let db = plain_items_db("bad_input_bom");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bom.json");
    fs::write(
        &p,
        b"\xEF\xBB\xBF{\"items\": [{\"id\": 1, \"name\": \"Ren\xC3\xA9e\"}]}\n",
    )
    .unwrap();
    let out = dbf(&db, &["load", path_str(&p)]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr
            .contains("Loaded 1 row into 1 table from 1 file (1 inserted, 0 updated, 0 unchanged); realigned 1 sequence in"),
        "singular summary: {}",
        out.stderr
    );
    assert_eq!(
        db.query_scalar("SELECT name FROM items WHERE id = 1")
            .as_deref(),
        Some("Renée")
    );
    // The sequence moved past the loaded id.
    assert_eq!(
        db.query_scalar("INSERT INTO items (name) VALUES ('app') RETURNING id")
            .as_deref(),
        Some("2")
    );
}

#[test]
fn a_fixture_not_in_utf8_is_a_clear_error() {
    let db = plain_items_db("bad_input_encoding");
    db.sql("INSERT INTO items (name) VALUES ('existing')");
    let before = db_state(&db);
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join("latin1.json");
    fs::write(
        &latin1,
        b"{\"items\": [\n  {\"id\": 5, \"name\": \"ok\"},\n  {\"id\": 6, \"name\": \"Ren\xE9e\"}\n]}\n",
    )
    .unwrap();
    let out = dbf(&db, &["load", path_str(&latin1)]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert_one_error(
        &out.stderr,
        &[
            &format!("{}:3:25, table items, row 1", path_str(&latin1)),
            "not valid UTF-8 (bytes E9 65 22 7D)",
            "iconv",
        ],
    );

    // UTF-16 as Windows tools write it: with a byte-order mark.
    let utf16 = dir.path().join("utf16.json");
    let text = "{\"items\": [{\"id\": 7, \"name\": \"x\"}]}";
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    fs::write(&utf16, bytes).unwrap();
    let out = dbf(&db, &["load", path_str(&utf16)]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert_one_error(&out.stderr, &[path_str(&utf16), "UTF-16", "must be UTF-8"]);
    assert_eq!(db_state(&db), before);
}

#[test]
fn summaries_are_singular_for_one() {
    let db = plain_items_db("bad_input_plural");
    db.sql("INSERT INTO items (name) VALUES ('one')");
    let dir = tempfile::tempdir().unwrap();
    let out = dbf(&db, &["dump", "-o", path_str(&dir.path().join("one.json"))]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("Dumped 1 row from 1 table to "),
        "{}",
        out.stderr
    );
    let out = dbf(&db, &["reset-sequences"]);
    assert!(
        out.stderr.contains("Checked 1 sequence, moved 0."),
        "{}",
        out.stderr
    );
    let out = dbf(&db, &["reset-sequences", "--check"]);
    assert_eq!(out.stderr, "The 1 sequence is safe.\n");
}

/// A large single-table file loads with memory bounded by a row, not by the file: peak RSS of
/// the load stays far below the file's size. (The 1 GB figure is measured by hand: README.)
#[test]
fn a_large_single_table_fixture_loads_with_flat_memory() {
    let db = plain_items_db("bad_input_large_file");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("large.json");
    let n = 300_000;
    {
        let mut w = std::io::BufWriter::new(fs::File::create(&p).unwrap());
        writeln!(w, "{{\"items\": [").unwrap();
        let pad = "y".repeat(200);
        for i in 1..=n {
            let sep = if i == n { "" } else { "," };
            writeln!(w, "{{\"id\": {i}, \"name\": \"{pad} {i}\"}}{sep}").unwrap();
        }
        writeln!(w, "]}}").unwrap();
    }
    let size = fs::metadata(&p).unwrap().len();
    assert!(size > 64 << 20, "the file is {size} bytes");
    let child = spawn(&db, dir.path(), &["load", path_str(&p), "--quiet"]);
    let (code, max_rss_kib) = wait_with_max_rss(child);
    assert_eq!(code, 0);
    assert_eq!(
        db.query_scalar("SELECT count(*) FROM items").as_deref(),
        Some(n.to_string().as_str())
    );
    let rss = max_rss_kib * 1024;
    assert!(
        rss < size / 2,
        "peak RSS {rss} bytes for a {size}-byte file: the file is being held in memory"
    );
}

/// Waits for `child`, returning its exit code and its peak RSS in KiB: the largest `VmHWM` read
/// from /proc while it runs (the high-water mark of its own address space since exec; the
/// rusage of the child would count the test process's pages it was forked from).
fn wait_with_max_rss(mut child: Child) -> (i32, u64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let mut stderr = child.stderr.take().expect("piped stderr");
    let drain = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(hwm) = fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = drain.join().unwrap();
    assert!(peak > 0, "never read {status_file}");
    (
        status
            .code()
            .unwrap_or_else(|| panic!("{status}: {stderr}")),
        peak,
    )
}

/// xml where the server has libxml: loaded and dumped back as the same string. Where it has not
/// (the PostgreSQL 18 build in CI): the load fails with the server's reason, naming the file,
/// table, row and column, and changes nothing. Either way something is checked; never skipped.
#[test]
fn xml_values_load_or_fail_clearly() {
    let db = TestDb::new("xml_values");
    db.sql(
        "CREATE TABLE docs (id serial PRIMARY KEY, x xml); CREATE TABLE other (id int PRIMARY KEY)",
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("docs.json");
    let fixture = r#"{"other": [{"id": 1}], "docs": [{"id": 1, "x": "<a b=\"1\">x &amp; y</a>"}]}"#;
    fs::write(&p, fixture).unwrap();
    let before = db_state(&db);
    let out = dbf(&db, &["load", path_str(&p)]);
    if xml_supported(&db) {
        assert_eq!(out.code, 0, "{out:#?}");
        let dumped = dbf(&db, &["dump", "--table", "docs"]);
        assert_eq!(
            dumped.stdout,
            "{\n  \"docs\": [\n    {\"id\":1,\"x\":\"<a b=\\\"1\\\">x &amp; y</a>\"}\n  ]\n}\n"
        );
    } else {
        assert_eq!(out.code, 2, "{out:#?}");
        assert_one_error(
            &out.stderr,
            &[
                path_str(&p),
                "table docs",
                "row 0",
                "column x",
                "unsupported XML feature",
            ],
        );
        assert_eq!(db_state(&db), before);
    }
}
