//! SQLite side of `testdb`: templates and clones are files in the directory of the server URL's
//! file, named after its stem. A template is built as `PREFIX_b_KEY.db` under an exclusive lock
//! on `PREFIX_t_KEY.lock` and renamed to `PREFIX_t_KEY.db` when complete; a clone is a copy,
//! `PREFIX_c_KEY_PID_N.db`, with a `.lock` file beside it holding its metadata (JSON) and, while
//! a [`super::TestDatabase`] holds it, a shared lock that tells `prune` it is in use. (The lock
//! is on a side file, never on the database file: closing a second descriptor of a SQLite file
//! would drop SQLite's own POSIX locks.)

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{
    next_serial, populate, short_key, unix_now, BuildSpec, Kind, Made, Meta, PruneOptions,
    PruneReport,
};
use crate::backend::{Connection, DatabaseUrl};
use crate::error::{Error, Result};

pub(crate) struct Dir {
    dir: PathBuf,
    stem: String,
}

/// The SQLite library's version (the bundled one: what every clone is opened with).
pub(crate) fn version() -> Result<String> {
    let mut conn = Connection::open(&DatabaseUrl::Sqlite(":memory:".into()), true)?;
    conn.query_json("SELECT json_quote(sqlite_version()) AS j")
}

fn io(p: &Path, e: std::io::Error) -> Error {
    Error::io(p.display().to_string(), e)
}

impl Dir {
    pub fn new(file: PathBuf) -> Dir {
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Dir { dir, stem }
    }

    pub fn stem(&self) -> String {
        self.stem.clone()
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.db"))
    }

    fn lock_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lock"))
    }

    pub fn ensure_template(&self, spec: &BuildSpec<'_>) -> Result<bool> {
        let name = format!("{}_t_{}", spec.prefix, short_key(spec.key));
        let template = self.path_of(&name);
        if template.exists() {
            return Ok(false);
        }
        fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let lock_path = self.lock_of(&name);
        let lock = open_lock(&lock_path)?;
        lock.lock().map_err(|e| io(&lock_path, e))?;
        // Another process may have built it while we waited.
        if template.exists() {
            return Ok(false);
        }
        let build = self.path_of(&format!("{}_b_{}", spec.prefix, short_key(spec.key)));
        remove_db(&build);
        let filled = (|| {
            let mut conn = Connection::open(&DatabaseUrl::Sqlite(build.clone()), true)?;
            populate(&mut conn, spec.migrations, spec.fixtures, spec.mode)
        })();
        if let Err(e) = filled {
            remove_db(&build);
            return Err(e);
        }
        fs::rename(&build, &template).map_err(|e| io(&template, e))?;
        Ok(true)
    }

    pub fn clone_template(&self, prefix: &str, key: &str, meta: &Meta) -> Result<Made> {
        let template = self.path_of(&format!("{prefix}_t_{}", short_key(key)));
        self.new_clone(prefix, key, meta, |path| {
            fs::copy(&template, path).map(|_| ()).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    // The same wording as PostgreSQL's, so the caller rebuilds it.
                    Error::db(
                        format!("cloning {}", template.display()),
                        "template does not exist",
                    )
                } else {
                    io(&template, e)
                }
            })
        })
    }

    pub fn create_empty(&self, prefix: &str, key: &str, meta: &Meta) -> Result<Made> {
        self.new_clone(prefix, key, meta, |path| {
            File::create(path).map(|_| ()).map_err(|e| io(path, e))
        })
    }

    fn new_clone(
        &self,
        prefix: &str,
        key: &str,
        meta: &Meta,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Made> {
        let name = format!(
            "{prefix}_c_{}_{}_{}",
            short_key(key),
            std::process::id(),
            next_serial()
        );
        let path = self.path_of(&name);
        let lock_path = self.lock_of(&name);
        let mut lock = open_lock(&lock_path)?;
        lock.lock_shared().map_err(|e| io(&lock_path, e))?;
        lock.set_len(0)
            .and_then(|()| lock.write_all(serde_json::to_string(meta).expect("plain").as_bytes()))
            .map_err(|e| io(&lock_path, e))?;
        if let Err(e) = fill(&path) {
            let _ = fs::remove_file(&lock_path);
            return Err(e);
        }
        Ok(Made {
            name: path.display().to_string(),
            url: DatabaseUrl::Sqlite(path),
            lock: Some(lock),
        })
    }

    pub fn drop_clone(&self, name: &str) -> Result<()> {
        let path = PathBuf::from(name);
        remove_db(&path);
        let _ = fs::remove_file(path.with_extension("lock"));
        Ok(())
    }

    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(e) => return Err(io(&self.dir, e)),
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        let now = unix_now();
        for path in files {
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((prefix, kind, key)) = parse_name(file) else {
                continue;
            };
            if opts.prefix.as_deref().is_some_and(|p| p != prefix) {
                continue;
            }
            let lock_path = path.with_extension("lock");
            let meta = match kind {
                Kind::Clone => match fs::read_to_string(&lock_path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Meta>(&t).ok())
                {
                    Some(m) => m,
                    None => continue, // not ours, or being created this instant
                },
                _ => Meta {
                    kind,
                    prefix: prefix.to_string(),
                    key: key.to_string(),
                    created: modified(&path),
                    pid: 0,
                    host: String::new(),
                },
            };
            // Templates and builds are locked through the template's lock file while built.
            let lock_path = match kind {
                Kind::Clone => lock_path,
                _ => self.lock_of(&format!("{prefix}_t_{key}")),
            };
            let expired = kind == Kind::Build || meta.expired(now, opts);
            if !expired {
                report.kept += 1;
                continue;
            }
            if opts.dry_run {
                report.removed.push(path.display().to_string());
                continue;
            }
            let lock = open_lock(&lock_path)?;
            if lock.try_lock().is_err() {
                report.in_use.push(path.display().to_string());
                continue;
            }
            remove_db(&path);
            if kind == Kind::Clone {
                let _ = fs::remove_file(&lock_path);
            }
            report.removed.push(path.display().to_string());
        }
        Ok(report)
    }
}

/// `testdb drop PATH`: only a clone testdb made (its name and metadata say so).
pub(crate) fn drop_by_path(path: &Path) -> Result<()> {
    let ours = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_name)
        .is_some_and(|(_, k, _)| k == Kind::Clone)
        && fs::read_to_string(path.with_extension("lock"))
            .ok()
            .and_then(|t| serde_json::from_str::<Meta>(&t).ok())
            .is_some();
    if !ours {
        return Err(Error::Invalid(format!(
            "{}: not a database made by `dbfixtures testdb create`; refusing to remove it",
            path.display()
        )));
    }
    remove_db(path);
    let _ = fs::remove_file(path.with_extension("lock"));
    Ok(())
}

/// `PREFIX_t_KEY.db`, `PREFIX_b_KEY.db`, `PREFIX_c_KEY_PID_N.db` → (prefix, kind, key).
fn parse_name(file: &str) -> Option<(&str, Kind, &str)> {
    let base = file.strip_suffix(".db")?;
    let is_key = |k: &str| k.len() == 16 && k.bytes().all(|b| b.is_ascii_hexdigit());
    for (marker, kind) in [("_t_", Kind::Template), ("_b_", Kind::Build)] {
        if base.len() > 19 {
            let (head, key) = base.split_at(base.len() - 16);
            if let Some(prefix) = head.strip_suffix(marker) {
                if is_key(key) && !prefix.is_empty() {
                    return Some((prefix, kind, key));
                }
            }
        }
    }
    // Clone: from the right, N, PID, KEY, then `_c_`.
    let mut parts = base.rsplitn(4, '_');
    let (n, pid, key, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let prefix = rest.strip_suffix("_c")?;
    (numeric(n) && numeric(pid) && is_key(key) && !prefix.is_empty()).then_some((
        prefix,
        Kind::Clone,
        key,
    ))
}

fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io(path, e))
}

/// Removes a database file and SQLite's side files.
fn remove_db(path: &Path) {
    let _ = fs::remove_file(path);
    for ext in ["-journal", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(ext);
        let _ = fs::remove_file(PathBuf::from(p));
    }
}

fn modified(p: &Path) -> u64 {
    fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        let k = "0123456789abcdef";
        assert_eq!(
            parse_name(&format!("app_t_{k}.db")),
            Some(("app", Kind::Template, k))
        );
        assert_eq!(
            parse_name(&format!("my_app_c_{k}_123_4.db")),
            Some(("my_app", Kind::Clone, k))
        );
        assert_eq!(
            parse_name(&format!("a_b_{k}.db")),
            Some(("a", Kind::Build, k))
        );
        assert_eq!(parse_name("app.db"), None);
        assert_eq!(parse_name(&format!("app_t_{k}.lock")), None);
        assert_eq!(parse_name("x_c_nothex_1_2.db"), None);
    }
}
