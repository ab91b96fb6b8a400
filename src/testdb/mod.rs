//! `testdb`: a loaded database per test in milliseconds. The first request builds a *template*
//! (migrations applied, fixtures loaded, sequences realigned) once; every test then gets a clone
//! of it (`CREATE DATABASE ... TEMPLATE` on PostgreSQL, a file copy on SQLite).
//!
//! Invariants:
//! - The template's name carries its *key*: a SHA-256 over the tool's version, the backend and
//!   server version, every migration file (path and bytes), every fixture file (in load order,
//!   bytes) and the load mode. Change one byte and a new template is built: nothing stale is
//!   ever handed out.
//! - A template is built once across threads and processes: under an in-process mutex, then a
//!   cross-process lock (PostgreSQL: a session advisory lock on the admin connection, keyed by
//!   the template key; SQLite: a file lock), re-checking after taking it whether another process
//!   built it meanwhile. It is built under a temporary name and renamed when complete, so a
//!   half-built template is never cloned. On PostgreSQL it is then marked `IS_TEMPLATE` and
//!   `ALLOW_CONNECTIONS false`: nobody can be connected to it when it is cloned.
//! - Everything created carries a recognisable name (`PREFIX_t_KEY`, `PREFIX_c_KEY_PID_N`,
//!   `PREFIX_p_KEY_PID_N` for pool members, `PREFIX_b_KEY` while building) and metadata
//!   (PostgreSQL: `COMMENT ON DATABASE`; SQLite: the clone's `.lock` file) saying what it is,
//!   for which prefix and key, when and for which process it was made. [`prune`] removes what
//!   carries that metadata, by age (or a dead owner process on this host, or a pool member
//!   whose template is gone), and never while in use. The one exception, found by its name:
//!   a pool member a killed filler left without its comment (connections disallowed, no
//!   comment at all, and no filler of its key holding the lock; see `pg.rs`).
//! - A [`TestDatabase`] drops its database when it goes out of scope, unless the thread is
//!   panicking: then it keeps it and prints where it is (password removed) on stderr. The drop
//!   is synchronous: a drop handed to a background thread would be lost when the test process
//!   exits, leaking the database.
//! - PostgreSQL keeps a *pool* of ready clones on the server (`PREFIX_p_KEY_PID_N`, see
//!   `pg.rs`): `create` claims one atomically (threads and processes alike) and falls back to
//!   a direct clone when the pool is empty, so a request never waits for the pool; a background
//!   filler (`pool.rs`) tops it up. Only a member whose comment carries the current full key is
//!   ever claimed. SQLite keeps no pool (a clone is a sub-millisecond file copy).
//!
//! Backend SQL and file handling live in `pg.rs` and `sqlite.rs`; building reuses `migrate` and
//! `load` unchanged.

mod pg;
mod pool;
mod sqlite;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, Connection, DatabaseUrl, TxMode};
use crate::error::{Error, Result};
use crate::load::{LoadOptions, Mode};
use crate::progress::NoProgress;

/// What `prune` removes by default: clones and templates older than this (and not in use).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The prefix used when the server URL names no database.
pub const DEFAULT_PREFIX: &str = "dbf";

/// Free ready clones kept per template key on PostgreSQL when neither [`TestDbBuilder::pool`]
/// nor [`POOL_ENV`] says otherwise (README: "The pool of ready clones").
pub const DEFAULT_POOL_SIZE: usize = 4;

/// The environment variable giving the pool size (`0` disables the pool); an explicit
/// [`TestDbBuilder::pool`] (CLI: `--pool`) wins over it.
pub const POOL_ENV: &str = "DBFIXTURES_TESTDB_POOL";

/// Longest prefix accepted: PostgreSQL names are at most 63 bytes, and a clone's name adds
/// `_c_` + 16 hex digits + pid + counter.
pub const MAX_PREFIX_LEN: usize = 24;

/// How a PostgreSQL 15+ server copies the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// `FILE_COPY` when the server runs with `fsync = off` (it then skips the checkpoint that
    /// makes it slow), else `WAL_LOG` (measured on PostgreSQL 15: FILE_COPY 13 ms vs WAL_LOG
    /// 22 ms with fsync off; WAL_LOG 28 ms vs FILE_COPY 39 ms with default durability).
    /// Servers before 15 have no choice (file copy).
    #[default]
    Auto,
    FileCopy,
    WalLog,
}

/// Builds test databases from one template. Cheap to keep in a `static` (it is `Sync`): the
/// key is computed and the template checked once per builder, admin connections are pooled.
///
/// ```no_run
/// use dbfixtures::testdb::TestDbBuilder;
/// let dbs = TestDbBuilder::new("postgres://postgres@localhost/app_test")
///     .migrations("migrations")
///     .fixtures(["fixtures/"]);
/// let db = dbs.create()?;          // first call builds the template, later calls clone it
/// let mut conn = db.connect()?;    // a dbfixtures::Connection (Connection::Pg(diesel conn))
/// # Ok::<(), dbfixtures::Error>(())
/// ```
pub struct TestDbBuilder {
    server: String,
    migrations: Option<PathBuf>,
    fixtures: Vec<PathBuf>,
    mode: Mode,
    prefix: Option<String>,
    strategy: Strategy,
    owner_pid: Option<u32>,
    pool: Option<usize>,
    /// Whether `create` tops the pool up from a thread of this process.
    fill_in_background: bool,
    state: Mutex<Option<Arc<Server>>>,
    /// The key and whether the template is known to exist, once computed.
    prepared: Mutex<Option<Prepared>>,
    /// The pool's background filler, started by the first `create` that may use the pool.
    /// Declared last: dropped (stopped and joined) after everything else is released.
    filler: Mutex<Option<pool::Filler>>,
}

#[derive(Clone)]
struct Prepared {
    key: String,
    ready: bool,
}

/// The server (PostgreSQL) or directory (SQLite) test databases live on.
pub(crate) enum Server {
    Pg(pg::Server),
    Sqlite(sqlite::Dir),
}

impl TestDbBuilder {
    /// `server` is a PostgreSQL URL (its database name, when it has one, is the default prefix
    /// of what is created; the admin connection goes to the `postgres` database) or a SQLite
    /// URL/path (templates and clones are files beside it, named after its file name).
    pub fn new(server: impl Into<String>) -> TestDbBuilder {
        TestDbBuilder {
            server: server.into(),
            migrations: None,
            fixtures: Vec::new(),
            mode: Mode::Upsert,
            prefix: None,
            strategy: Strategy::Auto,
            owner_pid: None,
            pool: None,
            fill_in_background: true,
            state: Mutex::new(None),
            prepared: Mutex::new(None),
            filler: Mutex::new(None),
        }
    }

    /// A diesel migrations directory (folders of `up.sql`), applied to the template.
    pub fn migrations(mut self, dir: impl Into<PathBuf>) -> Self {
        self.migrations = Some(dir.into());
        self.reset()
    }

    /// Fixture files or directories, loaded into the template as `dbfixtures load` loads them.
    pub fn fixtures<P: Into<PathBuf>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.fixtures.extend(paths.into_iter().map(Into::into));
        self.reset()
    }

    /// The load mode (part of the key). Default: upsert.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self.reset()
    }

    /// The name prefix of templates and clones: `[a-z0-9_]`, starting with a letter, at most
    /// [`MAX_PREFIX_LEN`] bytes. [`prune`] with this prefix only touches what it names.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self.reset()
    }

    /// How PostgreSQL copies the template (default [`Strategy::Auto`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The process recorded as the clones' owner (default: this one). [`prune`] removes a
    /// clone of a dead owner on this host whatever its age. The CLI passes its parent process,
    /// the test suite that ran it.
    pub fn owner_pid(mut self, pid: u32) -> Self {
        self.owner_pid = Some(pid);
        self
    }

    /// How many free ready clones to keep on the server for this template (PostgreSQL; `0`
    /// disables the pool). Default: [`POOL_ENV`] when set, else [`DEFAULT_POOL_SIZE`]. SQLite
    /// accepts it and keeps no pool: a clone there is a file copy, as fast as a claim.
    pub fn pool(mut self, size: usize) -> Self {
        self.pool = Some(size);
        self
    }

    /// Whether [`Self::create`] tops the pool up from a background thread of this process
    /// (default: yes). A process that exits right after `create` turns it off and runs
    /// [`Self::top_up_pool`] elsewhere (`dbfixtures testdb create` starts a detached
    /// `testdb fill`): a thread killed mid-fill would hold the fillers' lock at the moment the
    /// other filler tries it, and that one would then do nothing.
    pub fn fill_in_background(mut self, on: bool) -> Self {
        self.fill_in_background = on;
        self
    }

    /// The pool size in effect (see [`Self::pool`]).
    pub fn pool_size(&self) -> Result<usize> {
        match self.pool {
            Some(n) => Ok(n),
            None => pool_size_from_env(),
        }
    }

    fn reset(self) -> Self {
        *lock(&self.prepared) = None;
        self
    }

    fn server(&self) -> Result<Arc<Server>> {
        let mut s = lock(&self.state);
        if let Some(s) = &*s {
            return Ok(s.clone());
        }
        let server = Arc::new(Server::open(&self.server)?);
        *s = Some(server.clone());
        Ok(server)
    }

    fn prefix_for(&self, server: &Server) -> Result<String> {
        match &self.prefix {
            Some(p) => check_prefix(p).map(|()| p.clone()),
            None => Ok(server.default_prefix()),
        }
    }

    /// The template key for the current files (hex SHA-256).
    pub fn key(&self) -> Result<String> {
        let server = self.server()?;
        self.compute_key(&server)
    }

    fn compute_key(&self, server: &Server) -> Result<String> {
        let mut h = Sha256::new();
        let mut field = |tag: &str, bytes: &[u8]| {
            h.update(tag.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field("format", b"dbfixtures testdb 1");
        field("version", env!("CARGO_PKG_VERSION").as_bytes());
        field("backend", server.backend_name().as_bytes());
        field("server", server.version()?.as_bytes());
        field("mode", format!("{:?}", self.mode).as_bytes());
        if let Some(dir) = &self.migrations {
            let mut files = Vec::new();
            walk(dir, dir, &mut files)?;
            files.sort();
            if files.is_empty() {
                return Err(Error::Migration {
                    dir: dir.clone(),
                    message: "no migration files in this directory".into(),
                });
            }
            for rel in files {
                field("migration", rel.to_string_lossy().as_bytes());
                field("bytes", &read_all(&dir.join(&rel))?);
            }
        }
        for f in crate::load::fixture_files(&self.fixtures)? {
            field(
                "fixture",
                f.file_name().unwrap_or_default().as_encoded_bytes(),
            );
            field("bytes", &read_all(&f)?);
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Makes sure the template exists (building it when needed) and returns its name and
    /// whether this call built it.
    pub fn template(&self) -> Result<(String, bool)> {
        let server = self.server()?;
        let (key, built) = self.ensure(&server)?;
        Ok((
            server.template_name(&self.prefix_for(&server)?, &key),
            built,
        ))
    }

    fn ensure(&self, server: &Server) -> Result<(String, bool)> {
        // Held while building, so threads of one process wait here instead of each queueing on
        // the cross-process lock.
        let mut prepared = lock(&self.prepared);
        if let Some(p) = prepared.as_ref().filter(|p| p.ready) {
            return Ok((p.key.clone(), false));
        }
        let key = match &*prepared {
            Some(p) => p.key.clone(),
            None => self.compute_key(server)?,
        };
        let prefix = self.prefix_for(server)?;
        let spec = BuildSpec {
            prefix: &prefix,
            key: &key,
            migrations: self.migrations.as_deref(),
            fixtures: &self.fixtures,
            mode: self.mode,
        };
        let built = server.ensure_template(&spec)?;
        *prepared = Some(Prepared {
            key: key.clone(),
            ready: true,
        });
        drop(prepared);
        if built {
            // Building is rare: the moment to sweep what earlier keys and crashed runs left.
            // The free pool members of other keys go now whatever their age: nothing claims them.
            let _ = prune_server(server, &PruneOptions::for_prefix(&prefix), Some(&key));
        }
        Ok((key, built))
    }

    /// A new database cloned from the template (built first when needed): a free member of
    /// the pool when there is one (PostgreSQL), else a direct clone.
    pub fn create(&self) -> Result<TestDatabase> {
        let server = self.server()?;
        let (key, built) = self.ensure(&server)?;
        let prefix = self.prefix_for(&server)?;
        let meta = self.clone_meta(&prefix, &key);
        let pool_size = self.pool_size()?;
        // The pool is a shortcut: when claiming fails (a broken admin connection), the direct
        // clone below reports what is wrong, if anything still is.
        let claimed = match pool_size {
            0 => None,
            _ => server.claim(&prefix, &key, &meta).ok().flatten(),
        };
        let pooled = claimed.is_some();
        let made = match claimed {
            Some(made) => made,
            None => self.clone_direct(&server, &prefix, &key, &meta)?,
        };
        if pool_size > 0 && self.fill_in_background {
            self.kick_filler(&server, &prefix, &key, pool_size);
        }
        Ok(TestDatabase {
            name: made.name,
            url: made.url,
            lock: made.lock,
            server,
            keep: false,
            built_template: built,
            pooled,
        })
    }

    fn clone_direct(&self, server: &Server, prefix: &str, key: &str, meta: &Meta) -> Result<Made> {
        match server.clone_template(prefix, key, meta, self.strategy) {
            // A prune may have removed the template since we checked: build it again, once.
            Err(Error::Database { message, .. }) if message.contains("does not exist") => {
                if let Some(p) = lock(&self.prepared).as_mut() {
                    p.ready = false;
                }
                self.ensure(server)?;
                server.clone_template(prefix, key, meta, self.strategy)
            }
            other => other,
        }
    }

    fn fill_job(&self, prefix: &str, key: &str, size: usize) -> pool::Job {
        pool::Job {
            prefix: prefix.to_string(),
            key: key.to_string(),
            strategy: self.strategy,
            size,
        }
    }

    /// Wakes the background filler, starting it on first use.
    fn kick_filler(&self, server: &Arc<Server>, prefix: &str, key: &str, size: usize) {
        let mut filler = lock(&self.filler);
        match &*filler {
            Some(f) => f.kick(),
            None => {
                let job = self.fill_job(prefix, key, size);
                *filler = Some(pool::Filler::start(server.clone(), job));
            }
        }
    }

    /// Builds the template when needed and fills the pool to its size now, waiting for
    /// another process's filler first; returns the free members then. For warming up before a
    /// run (the pool is otherwise filled in the background after the first `create`) and for
    /// tests. SQLite: builds the template and returns 0.
    pub fn fill_pool(&self) -> Result<usize> {
        self.fill(true).map(Option::unwrap_or_default)
    }

    /// Like [`Self::fill_pool`], but returns None at once when another filler is at work (it
    /// makes up for claims made meanwhile). What `dbfixtures testdb create` runs in the
    /// background.
    pub fn top_up_pool(&self) -> Result<Option<usize>> {
        self.fill(false)
    }

    fn fill(&self, wait: bool) -> Result<Option<usize>> {
        let server = self.server()?;
        let (key, _) = self.ensure(&server)?;
        let prefix = self.prefix_for(&server)?;
        let job = self.fill_job(&prefix, &key, self.pool_size()?);
        pool::fill_now(&server, &job, wait)
    }

    /// A new database made the slow way, without a template: created empty, migrated and
    /// loaded (what `#[sqlx::test]` does per test). For comparison and debugging.
    pub fn create_without_template(&self) -> Result<TestDatabase> {
        let server = self.server()?;
        let prefix = self.prefix_for(&server)?;
        let key = self.compute_key(&server)?;
        let meta = self.clone_meta(&prefix, &key);
        let made = server.create_empty(&prefix, &key, &meta)?;
        let db = TestDatabase {
            name: made.name,
            url: made.url,
            lock: made.lock,
            server,
            keep: false,
            built_template: false,
            pooled: false,
        };
        let mut conn = Connection::open(&db.url, true)?;
        populate(
            &mut conn,
            self.migrations.as_deref(),
            &self.fixtures,
            self.mode,
        )?;
        Ok(db)
    }

    /// One cloned database for many tests, each in a transaction rolled back at its end (see
    /// [`RollbackDb`]).
    pub fn rollback_db(&self) -> Result<RollbackDb> {
        let db = self.create()?;
        let mut conn = db.connect()?;
        let sequences = match &mut conn {
            Connection::Pg(_) => Some(pg::SequenceSnapshot::take(&mut conn)?),
            Connection::Sqlite(_) => None, // sqlite_sequence is transactional
        };
        Ok(RollbackDb {
            state: Mutex::new(RollbackState { conn, sequences }),
            db,
        })
    }

    fn clone_meta(&self, prefix: &str, key: &str) -> Meta {
        Meta::new(
            Kind::Clone,
            prefix,
            key,
            self.owner_pid.unwrap_or_else(std::process::id),
        )
    }
}

/// What building a template needs.
pub(crate) struct BuildSpec<'a> {
    pub prefix: &'a str,
    pub key: &'a str,
    pub migrations: Option<&'a Path>,
    pub fixtures: &'a [PathBuf],
    pub mode: Mode,
}

/// Applies the migrations and loads the fixtures in one transaction (what the template holds).
pub(crate) fn populate(
    conn: &mut Connection,
    migrations: Option<&Path>,
    fixtures: &[PathBuf],
    mode: Mode,
) -> Result<()> {
    conn.transaction(TxMode::ReadWrite, |c| {
        if let Some(dir) = migrations {
            crate::migrate::run_pending_in(c, dir)?;
        }
        if !fixtures.is_empty() {
            let opts = LoadOptions {
                mode,
                // Our own, brand-new database: the dev-name guard of replace does not apply.
                force: true,
                ..Default::default()
            };
            crate::load::load_paths(c, fixtures, &opts, &NoProgress)?;
        }
        Ok(())
    })
}

/// A database made by [`Server::clone_template`] / [`Server::create_empty`].
pub(crate) struct Made {
    pub name: String,
    pub url: DatabaseUrl,
    pub lock: Option<std::fs::File>,
}

impl Server {
    fn open(raw: &str) -> Result<Server> {
        Ok(match DatabaseUrl::parse(raw)? {
            DatabaseUrl::Postgres(u) => Server::Pg(pg::Server::new(u)),
            DatabaseUrl::Sqlite(p) => Server::Sqlite(sqlite::Dir::new(p)),
        })
    }

    fn backend_name(&self) -> &'static str {
        match self {
            Server::Pg(_) => Backend::Postgres.migrations_folder_name(),
            Server::Sqlite(_) => Backend::Sqlite.migrations_folder_name(),
        }
    }

    fn version(&self) -> Result<String> {
        match self {
            Server::Pg(s) => Ok(s.info()?.version.clone()),
            Server::Sqlite(_) => sqlite::version(),
        }
    }

    fn default_prefix(&self) -> String {
        let base = match self {
            Server::Pg(s) => s.database_name(),
            Server::Sqlite(d) => d.stem(),
        };
        sanitize_prefix(&base)
    }

    fn template_name(&self, prefix: &str, key: &str) -> String {
        let name = format!("{prefix}_t_{}", short_key(key));
        match self {
            Server::Pg(_) => name,
            Server::Sqlite(d) => d.path_of(&name).display().to_string(),
        }
    }

    fn ensure_template(&self, spec: &BuildSpec<'_>) -> Result<bool> {
        match self {
            Server::Pg(s) => s.ensure_template(spec),
            Server::Sqlite(d) => d.ensure_template(spec),
        }
    }

    fn clone_template(
        &self,
        prefix: &str,
        key: &str,
        meta: &Meta,
        strategy: Strategy,
    ) -> Result<Made> {
        match self {
            Server::Pg(s) => s.clone_template(prefix, key, meta, strategy),
            Server::Sqlite(d) => d.clone_template(prefix, key, meta),
        }
    }

    fn claim(&self, prefix: &str, key: &str, meta: &Meta) -> Result<Option<Made>> {
        match self {
            Server::Pg(s) => s.claim(prefix, key, meta),
            Server::Sqlite(_) => Ok(None),
        }
    }

    fn create_empty(&self, prefix: &str, key: &str, meta: &Meta) -> Result<Made> {
        match self {
            Server::Pg(s) => s.create_empty(prefix, key, meta),
            Server::Sqlite(d) => d.create_empty(prefix, key, meta),
        }
    }

    fn drop_database(&self, name: &str) -> Result<()> {
        match self {
            Server::Pg(s) => s.drop_clone(name),
            Server::Sqlite(d) => d.drop_clone(name),
        }
    }
}

/// A database of its own for one test. Dropped with its connections when this handle goes out
/// of scope, except when the thread is panicking: then it is kept and its URL printed.
pub struct TestDatabase {
    name: String,
    url: DatabaseUrl,
    /// SQLite: a shared lock on the clone's `.lock` file, so `prune` sees it in use.
    lock: Option<std::fs::File>,
    server: Arc<Server>,
    keep: bool,
    built_template: bool,
    pooled: bool,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestDatabase({})", self.url)
    }
}

impl TestDatabase {
    /// The database's name (PostgreSQL) or file path (SQLite).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL. `Display` leaves the password out; [`Self::connection_string`] keeps it.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The URL to hand to the code under test (with the server URL's password, if any).
    pub fn connection_string(&self) -> String {
        match &self.url {
            DatabaseUrl::Postgres(u) => u.clone(),
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
        }
    }

    /// A new connection to it.
    pub fn connect(&self) -> Result<Connection> {
        Connection::open(&self.url, false)
    }

    /// Whether making this database built the template (false when it was cloned from one
    /// that existed).
    pub fn built_template(&self) -> bool {
        self.built_template
    }

    /// Whether it was claimed from the pool of ready clones (false: cloned on the spot).
    pub fn from_pool(&self) -> bool {
        self.pooled
    }

    /// Keeps the database after the handle is gone (for inspection); returns its URL.
    pub fn keep(mut self) -> DatabaseUrl {
        self.keep = true;
        self.url.clone()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "dbfixtures testdb: test failed, keeping its database for inspection: {}\n  \
                 (`dbfixtures testdb drop` removes it; `dbfixtures testdb prune` sweeps old ones)",
                self.url
            );
            return;
        }
        if let Err(e) = self.server.drop_database(&self.name) {
            eprintln!("dbfixtures testdb: could not drop {}: {e}", self.url);
        }
        drop(self.lock.take());
    }
}

/// The rollback fast path: one cloned database and one connection shared by many tests, each
/// test in a transaction that is rolled back when its [`TestTransaction`] drops. Tests using
/// the same `RollbackDb` run one at a time (the connection is behind a mutex).
///
/// After each rollback the sequences are put back where they were (PostgreSQL's `nextval` is
/// not undone by ROLLBACK), so a test sees the same ids every time. Limits: the code under test
/// must use the given connection (another connection does not see the uncommitted rows and
/// cannot be rolled back); it must not COMMIT or run statements that cannot run in a
/// transaction (CREATE DATABASE, VACUUM, ...); `now()` is the transaction's start.
pub struct RollbackDb {
    state: Mutex<RollbackState>,
    db: TestDatabase,
}

struct RollbackState {
    conn: Connection,
    sequences: Option<pg::SequenceSnapshot>,
}

impl RollbackDb {
    /// Starts a test: waits for the previous test on this database to finish, then opens a
    /// transaction on the shared connection.
    pub fn begin(&self) -> Result<TestTransaction<'_>> {
        let mut guard = lock(&self.state);
        begin_transaction(&mut guard.conn)?;
        Ok(TestTransaction {
            guard,
            finished: false,
        })
    }

    /// The underlying database.
    pub fn database(&self) -> &TestDatabase {
        &self.db
    }
}

/// One test's transaction on a [`RollbackDb`]; derefs to the connection. Rolled back (and
/// sequences restored) on drop, also when the test panics.
pub struct TestTransaction<'a> {
    guard: MutexGuard<'a, RollbackState>,
    finished: bool,
}

impl std::ops::Deref for TestTransaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.guard.conn
    }
}

impl std::ops::DerefMut for TestTransaction<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.guard.conn
    }
}

impl TestTransaction<'_> {
    /// Ends the test now, reporting a failed rollback or sequence restore (drop does the same
    /// and prints the error).
    pub fn rollback(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.finished, true) {
            return Ok(());
        }
        let state = &mut *self.guard;
        let Some(seqs) = &state.sequences else {
            return rollback_all(&mut state.conn);
        };
        // Inside the test's transaction when it is still usable (one round trip less), else
        // after the rollback (an aborted transaction, or a test that dropped a sequence).
        if seqs.restore(&mut state.conn).is_ok() {
            return rollback_all(&mut state.conn);
        }
        rollback_all(&mut state.conn)?;
        seqs.restore(&mut state.conn)
    }
}

impl Drop for TestTransaction<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            eprintln!("dbfixtures testdb: rolling back the test's transaction failed: {e}");
        }
    }
}

/// Opens the test's transaction through diesel's transaction manager, so `transaction()` calls
/// of the code under test become savepoints inside it.
fn begin_transaction(conn: &mut Connection) -> Result<()> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let r = match conn {
        Connection::Pg(c) => AnsiTransactionManager::begin_transaction(c),
        Connection::Sqlite(c) => AnsiTransactionManager::begin_transaction(c),
    };
    r.map_err(|e| Error::db("starting the test's transaction", e))
}

/// Rolls back every open level (savepoints a panicking test left open, then the transaction).
fn rollback_all(conn: &mut Connection) -> Result<()> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    fn depth<C>(c: &mut C) -> usize
    where
        C: diesel::Connection<TransactionManager = AnsiTransactionManager>,
    {
        AnsiTransactionManager::transaction_manager_status_mut(c)
            .transaction_depth()
            .ok()
            .flatten()
            .map_or(0, |d| d.get() as usize)
    }
    loop {
        let r = match conn {
            Connection::Pg(c) => match depth(c) {
                0 => return Ok(()),
                _ => AnsiTransactionManager::rollback_transaction(c),
            },
            Connection::Sqlite(c) => match depth(c) {
                0 => return Ok(()),
                _ => AnsiTransactionManager::rollback_transaction(c),
            },
        };
        r.map_err(|e| Error::db("rolling back the test's transaction", e))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata and prune

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Template,
    Clone,
    /// A template being built (or left half-built by a process that died).
    Build,
    /// A free ready clone in the pool (PostgreSQL), not yet claimed by a test.
    Pool,
}

/// What is recorded with everything testdb creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub kind: Kind,
    pub prefix: String,
    pub key: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// The owning process (clones); the process that made it (others).
    pub pid: u32,
    pub host: String,
}

/// Marks a PostgreSQL database comment as ours.
pub(crate) const COMMENT_MARKER: &str = "dbfixtures testdb ";

impl Meta {
    pub(crate) fn new(kind: Kind, prefix: &str, key: &str, pid: u32) -> Meta {
        Meta {
            kind,
            prefix: prefix.to_string(),
            key: key.to_string(),
            created: unix_now(),
            pid,
            host: hostname(),
        }
    }

    pub(crate) fn to_comment(&self) -> String {
        format!(
            "{COMMENT_MARKER}{}",
            serde_json::to_string(self).expect("plain struct")
        )
    }

    pub(crate) fn from_comment(text: &str) -> Option<Meta> {
        serde_json::from_str(text.strip_prefix(COMMENT_MARKER)?).ok()
    }

    /// Whether `prune` may remove this (when it is also not in use): older than the limit, or
    /// a clone whose owner process on this host is gone.
    pub fn expired(&self, now: u64, opts: &PruneOptions) -> bool {
        let age = now.saturating_sub(self.created);
        if age >= opts.older_than.as_secs() {
            return true;
        }
        self.kind == Kind::Clone && self.host == hostname() && !process_alive(self.pid)
    }
}

/// What [`prune`] removes.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Only what was created with this prefix; None: everything testdb created on the server.
    pub prefix: Option<String>,
    /// Remove what is at least this old (clones of a dead owner on this host go at any age).
    pub older_than: Duration,
    /// List, remove nothing.
    pub dry_run: bool,
}

impl PruneOptions {
    pub fn for_prefix(prefix: &str) -> PruneOptions {
        PruneOptions {
            prefix: Some(prefix.to_string()),
            older_than: DEFAULT_MAX_AGE,
            dry_run: false,
        }
    }
}

/// What [`prune`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Names (SQLite: paths) removed (or, on a dry run, that would be).
    pub removed: Vec<String>,
    /// Expired but in use, so kept.
    pub in_use: Vec<String>,
    /// Not expired.
    pub kept: usize,
}

/// Removes leaked clones and old templates on the server (or SQLite directory) of `url`: only
/// databases testdb created (by their metadata), expired by age or dead owner, and not in use.
pub fn prune(url: &str, opts: &PruneOptions) -> Result<PruneReport> {
    if let Some(p) = &opts.prefix {
        check_prefix(p)?;
    }
    prune_server(&Server::open(url)?, opts, None)
}

/// `current_key`: a template was just built for this key (see `pg::Server::prune`).
fn prune_server(
    server: &Server,
    opts: &PruneOptions,
    current_key: Option<&str>,
) -> Result<PruneReport> {
    match server {
        Server::Pg(s) => s.prune(opts, current_key),
        Server::Sqlite(d) => d.prune(opts),
    }
}

/// The pool size from [`POOL_ENV`], else [`DEFAULT_POOL_SIZE`].
pub fn pool_size_from_env() -> Result<usize> {
    match std::env::var(POOL_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(DEFAULT_POOL_SIZE),
        Ok(v) => v.trim().parse().map_err(|_| {
            Error::Invalid(format!(
                "{POOL_ENV}={v:?}: the number of ready clones to keep (0 disables the pool)"
            ))
        }),
        Err(e) => Err(Error::Invalid(format!("{POOL_ENV}: {e}"))),
    }
}

/// Drops one database testdb created, given its URL. Refuses anything else.
pub fn drop_database(url: &str) -> Result<()> {
    match DatabaseUrl::parse(url)? {
        DatabaseUrl::Postgres(u) => pg::drop_by_url(&u),
        DatabaseUrl::Sqlite(p) => sqlite::drop_by_path(&p),
    }
}

/// The default prefix for a server URL (its database or file name, sanitized).
pub fn default_prefix(url: &str) -> Result<String> {
    Ok(Server::open(url)?.default_prefix())
}

// ---------------------------------------------------------------------------------------------
// Helpers

pub(crate) fn short_key(key: &str) -> &str {
    &key[..16.min(key.len())]
}

/// A process-wide counter making clone names unique within a process.
pub(crate) fn next_serial() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn check_prefix(p: &str) -> Result<()> {
    let ok = !p.is_empty()
        && p.len() <= MAX_PREFIX_LEN
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "testdb prefix {p:?}: use 1 to {MAX_PREFIX_LEN} characters a-z, 0-9 and _, \
             starting with a letter"
        )))
    }
}

fn sanitize_prefix(base: &str) -> String {
    let mut s: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(MAX_PREFIX_LEN)
        .collect();
    if s.is_empty() {
        return DEFAULT_PREFIX.to_string();
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s.insert(0, 'd');
        s.truncate(MAX_PREFIX_LEN);
    }
    s
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io(dir.display().to_string(), e))?;
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out)?;
        } else {
            out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
        }
    }
    Ok(())
}

fn read_all(p: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(p)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .map_err(|e| Error::io(p.display().to_string(), e))?;
    Ok(buf)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding it must not fail every later test.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

/// Whether a process with this id runs on this host. Where that cannot be told (no /proc), it
/// is taken to be alive, so only age decides.
pub(crate) fn process_alive(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Parses `30s`, `10m`, `2h`, `7d` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| Error::Invalid(format!("bad duration {s:?}: use e.g. 30s, 10m, 2h, 7d")))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(Error::Invalid(format!(
                "bad duration {s:?}: use e.g. 30s, 10m, 2h, 7d"
            )))
        }
    };
    Ok(Duration::from_secs(n * secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(check_prefix("app_test").is_ok());
        assert!(check_prefix("1app").is_err());
        assert!(check_prefix("App").is_err());
        assert!(check_prefix(&"a".repeat(MAX_PREFIX_LEN + 1)).is_err());
        assert_eq!(sanitize_prefix("My-App.test"), "my_app_test");
        assert_eq!(sanitize_prefix("9lives"), "d9lives");
        assert_eq!(sanitize_prefix(""), DEFAULT_PREFIX);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn meta_round_trips_through_the_comment_and_expires() {
        let m = Meta::new(Kind::Clone, "app", "abc", std::process::id());
        assert_eq!(Meta::from_comment(&m.to_comment()), Some(m.clone()));
        assert_eq!(Meta::from_comment("someone else's comment"), None);
        let opts = PruneOptions::for_prefix("app");
        // Young, owner alive: kept.
        assert!(!m.expired(m.created, &opts));
        // Old: expired.
        assert!(m.expired(m.created + 3600, &opts));
        // Owner gone (pid beyond pid_max): expired at any age.
        let dead = Meta {
            pid: u32::MAX - 1,
            ..m.clone()
        };
        assert!(dead.expired(dead.created, &opts));
        // A template has no owner: age only.
        let t = Meta {
            kind: Kind::Template,
            ..dead
        };
        assert!(!t.expired(t.created, &opts));
    }

    #[test]
    fn key_changes_with_any_byte_and_not_otherwise() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("m/2024-01-01-000000_a");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("up.sql"), "CREATE TABLE t (id INTEGER PRIMARY KEY);").unwrap();
        let fx = d.path().join("fx.json");
        std::fs::write(&fx, r#"{"t":[{"id":1}]}"#).unwrap();
        let url = format!("sqlite://{}", d.path().join("app.db").display());
        let b = || {
            TestDbBuilder::new(url.clone())
                .migrations(d.path().join("m"))
                .fixtures([&fx])
        };
        let k1 = b().key().unwrap();
        assert_eq!(k1, b().key().unwrap());
        assert_eq!(k1.len(), 64);
        std::fs::write(&fx, r#"{"t":[{"id":2}]}"#).unwrap();
        let k2 = b().key().unwrap();
        assert_ne!(k1, k2);
        std::fs::write(m.join("down.sql"), "DROP TABLE t;").unwrap();
        let k3 = b().key().unwrap();
        assert_ne!(k2, k3);
        assert_ne!(k3, b().mode(Mode::Insert).key().unwrap());
    }
}
