//! PostgreSQL side of `testdb`: the admin connection pool, building the template under a
//! session advisory lock, `CREATE DATABASE ... TEMPLATE`, the pool of ready clones, dropping
//! and pruning.
//!
//! Every name used in SQL is one we generated from a checked prefix and a hex key, and is
//! still quoted as an identifier; comments are quoted as literals.
//!
//! The pool lives on the server, so it is shared by threads and processes alike:
//! - A free member is a database `PREFIX_p_KEY16_PID_N` created from the template with
//!   `ALLOW_CONNECTIONS false` (nothing, autovacuum included, connects to it before it is
//!   claimed) and then given its `COMMENT` (kind `pool`, the full key, when it was made).
//! - Claiming is one transaction: `RENAME` to a clone name, `ALLOW_CONNECTIONS true`, the
//!   clone's own comment. `RENAME` locks the database, so of two processes claiming the same
//!   member one wins and the other gets "does not exist" and tries the next: a member is never
//!   handed out twice. Only members whose comment carries the current full key are candidates.
//! - Members are made by one filler at a time per prefix and key: it holds a session advisory
//!   lock (try-lock; a filler that finds it taken does nothing). A member without a comment is
//!   therefore either being made right now (the lock is held) or the leftover of a filler that
//!   died between `CREATE DATABASE` and `COMMENT` (its backend holds the lock until its CREATE
//!   has committed and it exits): it is never claimed, and whoever takes the lock drops it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{
    lock, next_serial, populate, short_key, unix_now, BuildSpec, Kind, Made, Meta, PruneOptions,
    PruneReport, Strategy, COMMENT_MARKER,
};
use crate::backend::{Connection, DatabaseUrl};
use crate::catalog::{quote_ident, quote_literal};
use crate::error::{Error, Result};

/// What the key and the clone statement depend on.
pub(crate) struct Info {
    /// `server_version_num`, e.g. 150004.
    pub version_num: u32,
    /// The version string (part of the template key).
    pub version: String,
    pub fsync: bool,
}

pub(crate) struct Server {
    /// The URL as given (password included: it is needed to connect).
    raw: String,
    pool: Mutex<Vec<Connection>>,
    info: OnceLock<Info>,
}

impl Server {
    pub fn new(raw: String) -> Server {
        Server {
            raw,
            pool: Mutex::new(Vec::new()),
            info: OnceLock::new(),
        }
    }

    /// The database named by the URL ("" when none).
    pub fn database_name(&self) -> String {
        database_of(&self.raw)
    }

    /// Runs `f` on a pooled admin connection (to the `postgres` database, else `template1`).
    /// A connection whose call failed is not returned to the pool: it may be broken.
    fn with_admin<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let pooled = lock(&self.pool).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect_admin()?,
        };
        let r = f(&mut conn);
        if r.is_ok() {
            lock(&self.pool).push(conn);
        }
        r
    }

    pub fn connect_admin(&self) -> Result<Connection> {
        let first = Connection::open(&self.url_for("postgres"), false);
        let mut conn = match first {
            Err(Error::Connect { message, .. }) if message.contains("does not exist") => {
                Connection::open(&self.url_for("template1"), false)
            }
            other => other,
        }?;
        // The clones' COMMENT need not wait for a WAL flush (CREATE / DROP DATABASE still do:
        // PostgreSQL forces their commits synchronous). Lost metadata after a server crash only
        // means prune leaves that clone alone.
        conn.execute("SET synchronous_commit = off")?;
        Ok(conn)
    }

    pub fn url_for(&self, db: &str) -> DatabaseUrl {
        DatabaseUrl::Postgres(url_with_database(&self.raw, db))
    }

    pub fn info(&self) -> Result<&Info> {
        if let Some(i) = self.info.get() {
            return Ok(i);
        }
        let (num, version, fsync): (String, String, String) = self.with_admin(|c| {
            c.query_json(
                "SELECT json_build_array(current_setting('server_version_num'), \
                 current_setting('server_version'), current_setting('fsync'))::text AS j",
            )
        })?;
        let info = Info {
            version_num: num
                .parse()
                .map_err(|_| Error::db("reading the server version", &num))?,
            version,
            fsync: fsync == "on",
        };
        Ok(self.info.get_or_init(|| info))
    }

    fn drop_sql(&self, name: &str, force: bool) -> Result<String> {
        let force = if force && self.info()?.version_num >= 130000 {
            " WITH (FORCE)"
        } else {
            ""
        };
        Ok(format!(
            "DROP DATABASE IF EXISTS {}{force}",
            quote_ident(name)
        ))
    }

    /// Builds the template unless it exists; true when this call built it.
    pub fn ensure_template(&self, spec: &BuildSpec<'_>) -> Result<bool> {
        let template = format!("{}_t_{}", spec.prefix, short_key(spec.key));
        if self.with_admin(|c| exists(c, &template))? {
            return Ok(false);
        }
        let lock_key = advisory_key(spec.prefix, spec.key);
        let drop_build = self.drop_sql(&build_name(spec), true)?;
        self.with_admin(|admin| {
            admin.execute(&format!("SELECT pg_advisory_lock({lock_key})"))?;
            let r = self.build_locked(admin, spec, &template, &drop_build);
            let unlocked = admin.execute(&format!("SELECT pg_advisory_unlock({lock_key})"));
            let built = r?;
            unlocked?;
            Ok(built)
        })
    }

    fn build_locked(
        &self,
        admin: &mut Connection,
        spec: &BuildSpec<'_>,
        template: &str,
        drop_build: &str,
    ) -> Result<bool> {
        // Another process may have built it while we waited for the lock.
        if exists(admin, template)? {
            return Ok(false);
        }
        let build = build_name(spec);
        // Left by a builder that died (we hold the lock, so nobody is building it now).
        admin.execute(drop_build)?;
        admin.execute(&format!(
            "CREATE DATABASE {} TEMPLATE template0",
            quote_ident(&build)
        ))?;
        let meta = Meta::new(Kind::Build, spec.prefix, spec.key, std::process::id());
        let filled = (|| {
            comment(admin, &build, &meta)?;
            let mut conn = Connection::open(&self.url_for(&build), false)?;
            populate(&mut conn, spec.migrations, spec.fixtures, spec.mode)
        })();
        if let Err(e) = filled {
            let _ = admin.execute(drop_build);
            return Err(e);
        }
        let meta = Meta {
            kind: Kind::Template,
            ..meta
        };
        comment(admin, &build, &meta)?;
        let b = quote_ident(&build);
        admin.execute(&format!(
            "ALTER DATABASE {b} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        ))?;
        // The build connection's backend may still be exiting: RENAME waits for it.
        retry_while_accessed(|| {
            admin.execute(&format!(
                "ALTER DATABASE {b} RENAME TO {}",
                quote_ident(template)
            ))
        })?;
        Ok(true)
    }

    /// `TEMPLATE "PREFIX_t_KEY" STRATEGY ...`: what a clone (or pool member) is made from.
    fn template_clause(&self, prefix: &str, key: &str, strategy: Strategy) -> Result<String> {
        let info = self.info()?;
        let strategy = match (info.version_num >= 150000, strategy) {
            (false, _) => "",
            (true, Strategy::FileCopy) => " STRATEGY FILE_COPY",
            (true, Strategy::WalLog) => " STRATEGY WAL_LOG",
            (true, Strategy::Auto) if info.fsync => " STRATEGY WAL_LOG",
            (true, Strategy::Auto) => " STRATEGY FILE_COPY",
        };
        let template = quote_ident(&format!("{prefix}_t_{}", short_key(key)));
        Ok(format!("TEMPLATE {template}{strategy}"))
    }

    pub fn clone_template(
        &self,
        prefix: &str,
        key: &str,
        meta: &Meta,
        strategy: Strategy,
    ) -> Result<Made> {
        let clause = self.template_clause(prefix, key, strategy)?;
        self.create_named(prefix, key, meta, &clause)
    }

    pub fn create_empty(&self, prefix: &str, key: &str, meta: &Meta) -> Result<Made> {
        self.create_named(prefix, key, meta, "TEMPLATE template0")
    }

    fn create_named(&self, prefix: &str, key: &str, meta: &Meta, clause: &str) -> Result<Made> {
        let name =
            self.with_admin(|admin| create_commented(admin, "c", prefix, key, meta, clause))?;
        Ok(Made {
            url: self.url_for(&name),
            name,
            lock: None,
        })
    }

    /// Takes a free pool member of this prefix and key, renamed to a clone name with the
    /// clone's metadata; None when there is none (or every one was taken by someone else first).
    pub fn claim(&self, prefix: &str, key: &str, meta: &Meta) -> Result<Option<Made>> {
        let name = self.with_admin(|admin| {
            let mut free = free_members(admin, prefix, key)?;
            if free.is_empty() {
                return Ok(None);
            }
            // Claimers of other threads and processes start at other members, so that they
            // seldom queue behind each other's RENAME lock.
            let start = (std::process::id() as usize).wrapping_add(next_serial()) % free.len();
            free.rotate_left(start);
            for member in free {
                let clone = numbered("c", prefix, key);
                let claimed = admin.execute(&format!(
                    "BEGIN; SET LOCAL lock_timeout = '50ms'; \
                     ALTER DATABASE {m} RENAME TO {c}; \
                     ALTER DATABASE {c} WITH ALLOW_CONNECTIONS true; \
                     COMMENT ON DATABASE {c} IS {comment}; COMMIT",
                    m = quote_ident(&member),
                    c = quote_ident(&clone),
                    comment = quote_literal(&meta.to_comment()),
                ));
                match claimed {
                    Ok(()) => return Ok(Some(clone)),
                    // Taken (or being dropped by prune) by someone else first, or not ours to
                    // rename (another role made it): the next one. The failed statement left
                    // the transaction aborted.
                    Err(_) => admin.execute("ROLLBACK")?,
                }
            }
            Ok(None)
        })?;
        Ok(name.map(|name| Made {
            url: self.url_for(&name),
            name,
            lock: None,
        }))
    }

    /// Fills the pool of this prefix and key up to `size` free members on `conn` (an admin
    /// connection of the filler's own: it holds a session lock). With `wait`, waits for another
    /// filler to finish first; without, returns None at once when another one is at work (it
    /// re-counts after releasing the lock, so a claim made meanwhile is still made up for).
    /// Stops early when `stop` is set. Returns the free members counted last.
    pub fn fill(
        &self,
        conn: &mut Connection,
        job: &FillJob<'_>,
        wait: bool,
        stop: &AtomicBool,
    ) -> Result<Option<usize>> {
        let clause = self.template_clause(job.prefix, job.key, job.strategy)?;
        let k = pool_lock_key(job.prefix, short_key(job.key));
        loop {
            if wait {
                conn.execute(&format!("SELECT pg_advisory_lock({k})"))?;
            } else if !try_lock(conn, k)? {
                return Ok(None);
            }
            let filled = self.fill_locked(conn, job, &clause, stop);
            let unlocked = conn.execute(&format!("SELECT pg_advisory_unlock({k})"));
            let free = filled?;
            unlocked?;
            // A claim between our last count and the unlock found the lock taken and left the
            // refill to us.
            if stop.load(Ordering::Relaxed)
                || free < job.size
                || free_members(conn, job.prefix, job.key)?.len() >= job.size
            {
                return Ok(Some(free));
            }
        }
    }

    fn fill_locked(
        &self,
        conn: &mut Connection,
        job: &FillJob<'_>,
        clause: &str,
        stop: &AtomicBool,
    ) -> Result<usize> {
        // We hold the lock: a member without its comment is a dead filler's leftover. One we
        // may not drop (another role's) is left to its owner's filler or prune; it is never
        // claimed either way.
        for (name, _, key16) in orphans(conn, Some(job.prefix))? {
            if key16 == short_key(job.key) {
                let _ = drop_member(conn, &format!("DROP DATABASE {}", quote_ident(&name)));
            }
        }
        let meta = Meta::new(Kind::Pool, job.prefix, job.key, std::process::id());
        let clause = format!("{clause} ALLOW_CONNECTIONS false");
        loop {
            let free = free_members(conn, job.prefix, job.key)?.len();
            if free >= job.size || stop.load(Ordering::Relaxed) {
                return Ok(free);
            }
            let meta = Meta {
                created: unix_now(),
                ..meta.clone()
            };
            create_commented(conn, "p", job.prefix, job.key, &meta, &clause)?;
        }
    }

    pub fn drop_clone(&self, name: &str) -> Result<()> {
        let sql = self.drop_sql(name, true)?;
        self.with_admin(|admin| admin.execute(&sql))
    }

    /// `current_key`: set when a template was just built for it; then the free pool members of
    /// the prefix's other keys go too, whatever their age (nothing will claim them).
    pub fn prune(&self, opts: &PruneOptions, current_key: Option<&str>) -> Result<PruneReport> {
        let force_build = self.info()?.version_num >= 130000;
        self.with_admin(|admin| {
            let rows: Vec<(String, String)> = admin.query_json(&format!(
                "SELECT coalesce(json_agg(json_build_array(datname, d.description) \
                 ORDER BY datname), '[]')::text AS j \
                 FROM pg_database db JOIN pg_shdescription d \
                   ON d.objoid = db.oid AND d.classoid = 'pg_database'::regclass \
                 WHERE starts_with(d.description, {})",
                quote_literal(COMMENT_MARKER)
            ))?;
            let now = unix_now();
            let mut report = PruneReport::default();
            let ours: Vec<(String, Meta)> = rows
                .into_iter()
                .filter_map(|(name, text)| Some((name, Meta::from_comment(&text)?)))
                .filter(|(_, m)| opts.prefix.as_ref().is_none_or(|p| *p == m.prefix))
                .collect();
            // Templates first: a member whose template goes with them goes too.
            let mut templates = HashSet::new();
            for (name, meta) in ours.iter().filter(|(_, m)| m.kind != Kind::Pool) {
                let expired = match meta.kind {
                    // A build nobody holds the lock for is a leftover, whatever its age.
                    Kind::Build => true,
                    _ => meta.expired(now, opts),
                };
                let removed = expired
                    && match meta.kind {
                        _ if opts.dry_run => true,
                        // Plain DROP: it fails while anyone is connected, which is what we want.
                        Kind::Clone => {
                            try_drop(admin, &format!("DROP DATABASE {}", quote_ident(name)))?
                        }
                        _ => drop_template(admin, name, meta, force_build)?,
                    };
                match (expired, removed) {
                    (false, _) => report.kept += 1,
                    (true, true) => report.removed.push(name.clone()),
                    (true, false) => report.in_use.push(name.clone()),
                }
                if meta.kind == Kind::Template && !removed {
                    templates.insert((meta.prefix.as_str(), meta.key.as_str()));
                }
            }
            for (name, meta) in ours.iter().filter(|(_, m)| m.kind == Kind::Pool) {
                let expired = meta.expired(now, opts)
                    || !templates.contains(&(meta.prefix.as_str(), meta.key.as_str()))
                    || current_key.is_some_and(|k| k != meta.key);
                if !expired {
                    report.kept += 1;
                } else if opts.dry_run
                    || drop_member(admin, &format!("DROP DATABASE {}", quote_ident(name)))?
                {
                    report.removed.push(name.clone());
                } else {
                    // Claimed meanwhile: it is a test's clone now.
                    report.in_use.push(name.clone());
                }
            }
            // Members without their comment: leftovers of fillers that died, unless a filler
            // of their key is at work (then it may be making one this instant).
            for (name, prefix, key16) in orphans(admin, opts.prefix.as_deref())? {
                let k = pool_lock_key(&prefix, &key16);
                if opts.dry_run {
                    report.removed.push(name);
                    continue;
                }
                if !try_lock(admin, k)? {
                    report.in_use.push(name);
                    continue;
                }
                let dropped = drop_member(admin, &format!("DROP DATABASE {}", quote_ident(&name)));
                admin.execute(&format!("SELECT pg_advisory_unlock({k})"))?;
                if dropped? {
                    report.removed.push(name);
                }
            }
            Ok(report)
        })
    }
}

/// Drops a template (or leftover build) unless its key's lock is held: a builder is at work.
/// An in-flight clone holds the template's share lock, so DROP waits for it to finish.
fn drop_template(admin: &mut Connection, name: &str, meta: &Meta, force: bool) -> Result<bool> {
    let k = advisory_key(&meta.prefix, &meta.key);
    let got: bool = admin.query_json(&format!(
        "SELECT to_json(pg_try_advisory_lock({k}))::text AS j"
    ))?;
    if !got {
        return Ok(false);
    }
    let q = quote_ident(name);
    let r = (|| {
        if meta.kind == Kind::Template {
            admin.execute(&format!("ALTER DATABASE {q} WITH IS_TEMPLATE false"))?;
        }
        let force = if force && meta.kind == Kind::Build {
            " WITH (FORCE)"
        } else {
            ""
        };
        let dropped = try_drop(admin, &format!("DROP DATABASE {q}{force}"))?;
        if !dropped && meta.kind == Kind::Template {
            admin.execute(&format!("ALTER DATABASE {q} WITH IS_TEMPLATE true"))?;
        }
        Ok(dropped)
    })();
    admin.execute(&format!("SELECT pg_advisory_unlock({k})"))?;
    r
}

/// Runs a DROP; false when the database is in use.
fn try_drop(admin: &mut Connection, sql: &str) -> Result<bool> {
    match admin.execute(sql) {
        Ok(()) => Ok(true),
        Err(Error::Database { message, .. })
            if message.contains("being accessed by other users") =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// `testdb drop URL`: only a database whose comment says testdb made it.
pub(crate) fn drop_by_url(raw: &str) -> Result<()> {
    let name = database_of(raw);
    let server = Server::new(raw.to_string());
    // No row: no such database; a row with a NULL comment: not ours.
    let comment: Option<(Option<String>,)> = server.with_admin(|c| {
        c.query_json(&format!(
            "SELECT json_build_array(shobj_description(oid, 'pg_database'))::text AS j \
             FROM pg_database WHERE datname = {}",
            quote_literal(&name)
        ))
    })?;
    let shown = DatabaseUrl::Postgres(raw.to_string());
    match comment.map(|(c,)| c.as_deref().and_then(Meta::from_comment)) {
        None => Err(Error::Invalid(format!("{shown}: no such database"))),
        Some(Some(m)) if m.kind == Kind::Clone => server.drop_clone(&name),
        Some(_) => Err(Error::Invalid(format!(
            "{shown}: not a database made by `dbfixtures testdb create`; refusing to drop it"
        ))),
    }
}

/// What a filler fills: the pool of one prefix and key, up to `size` free members.
pub(crate) struct FillJob<'a> {
    pub prefix: &'a str,
    pub key: &'a str,
    pub strategy: Strategy,
    pub size: usize,
}

/// A fresh name `PREFIX_{kind}_KEY16_PID_N` (`c`: clone, `p`: pool member).
fn numbered(kind: &str, prefix: &str, key: &str) -> String {
    format!(
        "{prefix}_{kind}_{}_{}_{}",
        short_key(key),
        std::process::id(),
        next_serial()
    )
}

/// `CREATE DATABASE` under a fresh name, then its comment (dropped again if that fails).
fn create_commented(
    admin: &mut Connection,
    kind: &str,
    prefix: &str,
    key: &str,
    meta: &Meta,
    clause: &str,
) -> Result<String> {
    for _ in 0..100 {
        let name = numbered(kind, prefix, key);
        match admin.execute(&format!("CREATE DATABASE {} {clause}", quote_ident(&name))) {
            // Same pid and counter from another host or an earlier run: next number.
            Err(Error::Database { message, .. }) if message.contains("already exists") => continue,
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        if let Err(e) = comment(admin, &name, meta) {
            let _ = admin.execute(&format!("DROP DATABASE {}", quote_ident(&name)));
            return Err(e);
        }
        return Ok(name);
    }
    Err(Error::Invalid("could not find a free database name".into()))
}

/// The free pool members of a prefix and key: named for it, connections disallowed, and a
/// comment saying `pool` with this very key (the name holds only 16 hex digits of it).
fn free_members(admin: &mut Connection, prefix: &str, key: &str) -> Result<Vec<String>> {
    let rows: Vec<(String, Option<String>)> = admin.query_json(&format!(
        "SELECT coalesce(json_agg(json_build_array(datname, \
           shobj_description(oid, 'pg_database')) ORDER BY datname), '[]')::text AS j \
         FROM pg_database WHERE NOT datallowconn AND starts_with(datname, {})",
        quote_literal(&format!("{prefix}_p_{}_", short_key(key)))
    ))?;
    Ok(rows
        .into_iter()
        .filter(|(_, text)| {
            text.as_deref()
                .and_then(Meta::from_comment)
                .is_some_and(|m| m.kind == Kind::Pool && m.prefix == prefix && m.key == key)
        })
        .map(|(name, _)| name)
        .collect())
}

/// Databases named like pool members (of `prefix`, or of any prefix) with connections
/// disallowed and no comment at all: (name, prefix, key16).
fn orphans(admin: &mut Connection, prefix: Option<&str>) -> Result<Vec<(String, String, String)>> {
    let names: Vec<String> = admin.query_json(&format!(
        "SELECT coalesce(json_agg(datname ORDER BY datname), '[]')::text AS j \
         FROM pg_database WHERE NOT datallowconn AND starts_with(datname, {}) \
           AND strpos(datname, '_p_') > 0 AND shobj_description(oid, 'pg_database') IS NULL",
        quote_literal(&prefix.map(|p| format!("{p}_p_")).unwrap_or_default())
    ))?;
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let (p, key16) = parse_member(&name)?;
            let (p, key16) = (p.to_string(), key16.to_string());
            prefix
                .is_none_or(|want| want == p)
                .then_some((name, p, key16))
        })
        .collect())
}

/// `PREFIX_p_KEY16_PID_N` → (prefix, key16).
fn parse_member(name: &str) -> Option<(&str, &str)> {
    let mut parts = name.rsplitn(4, '_');
    let (n, pid, key16, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let hex = key16.len() == 16 && key16.bytes().all(|b| b.is_ascii_hexdigit());
    let prefix = rest.strip_suffix("_p")?;
    (numeric(n) && numeric(pid) && hex && super::check_prefix(prefix).is_ok())
        .then_some((prefix, key16))
}

fn try_lock(admin: &mut Connection, k: i64) -> Result<bool> {
    admin.query_json(&format!(
        "SELECT to_json(pg_try_advisory_lock({k}))::text AS j"
    ))
}

/// Drops a pool member; false when it no longer exists (claimed meanwhile: the RENAME and the
/// DROP both lock the database, so one waits for the other).
fn drop_member(admin: &mut Connection, sql: &str) -> Result<bool> {
    match admin.execute(sql) {
        Ok(()) => Ok(true),
        Err(Error::Database { message, .. }) if message.contains("does not exist") => Ok(false),
        Err(e) => Err(e),
    }
}

fn exists(admin: &mut Connection, name: &str) -> Result<bool> {
    admin.query_json(&format!(
        "SELECT to_json(EXISTS (SELECT 1 FROM pg_database WHERE datname = {}))::text AS j",
        quote_literal(name)
    ))
}

fn comment(admin: &mut Connection, name: &str, meta: &Meta) -> Result<()> {
    admin.execute(&format!(
        "COMMENT ON DATABASE {} IS {}",
        quote_ident(name),
        quote_literal(&meta.to_comment())
    ))
}

fn build_name(spec: &BuildSpec<'_>) -> String {
    format!("{}_b_{}", spec.prefix, short_key(spec.key))
}

/// The session advisory lock for a prefix's template: 64 bits of a hash of both (the same
/// files under two prefixes are two templates, built independently).
fn advisory_key(prefix: &str, key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{prefix}\0{key}").as_bytes());
    i64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

/// The session advisory lock of the pool fillers of a prefix and key (by its 16 hex digits,
/// all a leftover member's name tells).
fn pool_lock_key(prefix: &str, key16: &str) -> i64 {
    advisory_key(prefix, &format!("pool\0{key16}"))
}

fn retry_while_accessed(mut f: impl FnMut() -> Result<()>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(Error::Database { message, .. })
                if message.contains("being accessed by other users")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// The database name of a URL or connection string ("" when it names none).
fn database_of(raw: &str) -> String {
    if raw.contains("://") {
        return url::Url::parse(raw)
            .ok()
            .map(|u| u.path().trim_start_matches('/').to_string())
            .map(|p| {
                url::form_urlencoded::parse(format!("x={p}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or(p)
            })
            .unwrap_or_default();
    }
    raw.split_whitespace()
        .filter_map(|kv| kv.strip_prefix("dbname="))
        .next_back()
        .map(|v| v.trim_matches('\'').to_string())
        .unwrap_or_default()
}

/// The same server URL naming another database.
fn url_with_database(raw: &str, db: &str) -> String {
    if raw.contains("://") {
        if let Ok(mut u) = url::Url::parse(raw) {
            u.set_path(&format!("/{db}"));
            return u.to_string();
        }
    }
    // libpq keyword/value form: a later keyword overrides an earlier one.
    format!("{raw} dbname={db}")
}

/// Where every sequence of a database stood, to put them back after a rolled-back test
/// (nextval and setval are not undone by ROLLBACK).
pub(crate) struct SequenceSnapshot {
    /// `SELECT setval(...), ...` putting every sequence back where it stood, in chunks. setval
    /// is not transactional either, so it can run before the ROLLBACK, in the test's
    /// transaction, saving a round trip.
    restores: Vec<String>,
}

/// Sequences per statement.
const CHUNK: usize = 100;

impl SequenceSnapshot {
    pub fn take(conn: &mut Connection) -> Result<SequenceSnapshot> {
        let names: Vec<String> = conn.query_json(
            "SELECT coalesce(json_agg(format('%I.%I', n.nspname, c.relname) ORDER BY 1), '[]')::text AS j \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
        )?;
        let mut restores = Vec::new();
        for chunk in names.chunks(CHUNK) {
            let parts: Vec<String> = chunk
                .iter()
                .map(|s| format!("(SELECT json_build_array(last_value::text, is_called) FROM {s})"))
                .collect();
            let saved: Vec<(String, bool)> = conn.query_json(&format!(
                "SELECT json_build_array({})::text AS j",
                parts.join(", ")
            ))?;
            let sets: Vec<String> = chunk
                .iter()
                .zip(saved)
                .map(|(name, (value, called))| {
                    format!(
                        "setval({}::regclass, {value}, {called})",
                        quote_literal(name)
                    )
                })
                .collect();
            restores.push(format!("SELECT {}", sets.join(", ")));
        }
        Ok(SequenceSnapshot { restores })
    }

    /// Puts every sequence back where it stood.
    pub fn restore(&self, conn: &mut Connection) -> Result<()> {
        for sql in &self.restores {
            conn.execute(sql)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_other_databases() {
        assert_eq!(
            url_with_database("postgres://u:pw@h:5433/app?sslmode=disable", "x_c_1"),
            "postgres://u:pw@h:5433/x_c_1?sslmode=disable"
        );
        assert_eq!(
            url_with_database("host=h dbname=app", "x"),
            "host=h dbname=app dbname=x"
        );
        assert_eq!(database_of("postgres://u@h/app_test"), "app_test");
        assert_eq!(database_of("postgres://u@h"), "");
        assert_eq!(database_of("host=h dbname=app"), "app");
    }

    #[test]
    fn member_names_parse_back() {
        let k = "0123456789abcdef";
        assert_eq!(
            parse_member(&format!("my_app_p_{k}_123_4")),
            Some(("my_app", k))
        );
        assert_eq!(parse_member(&format!("app_c_{k}_123_4")), None);
        assert_eq!(parse_member("app_p_nothex_1_2"), None);
        assert_eq!(parse_member(&format!("App_p_{k}_1_2")), None);
        assert_ne!(pool_lock_key("a", k), advisory_key("a", k));
    }

    #[test]
    fn advisory_keys_differ_per_prefix_and_key() {
        assert_eq!(advisory_key("a", "k1"), advisory_key("a", "k1"));
        assert_ne!(advisory_key("a", "k1"), advisory_key("b", "k1"));
        assert_ne!(advisory_key("a", "k1"), advisory_key("a", "k2"));
    }
}
