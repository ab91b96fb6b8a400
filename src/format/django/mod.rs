//! `format::django`: Django's fixture format (`manage.py dumpdata` / `loaddata`) read by `load`.
//!
//! A Django fixture is a JSON array (or, `.jsonl`, one object per line) of
//! `{"model": "app_label.model", "pk": ..., "fields": {...}}`. Loading translates it, streaming,
//! into the native format (one temporary fixture per table) and hands that to [`crate::load`], so
//! a Django fixture gets exactly what a native one gets: one transaction, foreign-key order
//! whatever the file order, COPY speed, upsert by primary key and every sequence realigned.
//!
//! Invariants:
//! - Model → table: `--django-model TABLE=app_label.model` (or `[django] models` in the config
//!   file) first, else Django's own tables (`django_content_type`, `django_session`, ...), else
//!   Django's default name `app_label_model`. Field → column: the column of
//!   that name, else `field_id` (a foreign key's column). A field that is neither is a
//!   many-to-many list when the auto-created through table `<table>_<field>` exists.
//! - Many-to-many lists have loaddata's meaning: a listed field replaces that object's links
//!   (its rows in the through table are deleted, in the same transaction, then the listed ones
//!   inserted); an absent field leaves them alone.
//! - Values arrive in Django's forms and leave in the native ones: `BinaryField` base64 becomes
//!   bytea hex, `ArrayField`'s JSON-in-a-string becomes a JSON array, a JSON document that looks
//!   like the native `{"$json": ...}` wrapper is wrapped; everything else (datetimes, dates,
//!   times, decimal strings, durations, UUIDs, booleans, nulls) is already what PostgreSQL and
//!   the native loader accept.
//! - Every error names the Django file, the object's index in it, its model and pk, and the
//!   field; errors the native loader finds in the translated rows are mapped back to them.
//! - Memory stays flat: objects are read one at a time and written straight to the per-table
//!   files (the owners of replaced m2m links are kept only for through tables that already had
//!   rows).

pub mod dump;
pub mod load;
mod natural;
mod pg;
mod read;
mod sqlite;

use std::io::{BufRead, Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Which format a fixture file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Decide per file from its content (and `.jsonl` extension).
    #[default]
    Auto,
    Django,
    Native,
}

/// A file's format once decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detected {
    Native,
    /// A JSON array of objects.
    DjangoJson,
    /// One object per line.
    DjangoJsonl,
}

/// What the Django side of a load needs besides the native options.
#[derive(Debug, Clone, Default)]
pub struct DjangoOptions {
    pub format: Format,
    /// `(table, "app_label.model")` pairs for models whose table is not Django's default name.
    pub models: Vec<(String, String)>,
    /// `app_label` or `app_label.Model` whose objects are skipped (loaddata's `--exclude`).
    pub exclude: Vec<String>,
    /// Skip fields and models that do not exist in the database (loaddata's
    /// `--ignorenonexistent`).
    pub ignore_nonexistent: bool,
}

impl DjangoOptions {
    /// Adds the config file's `[django] models` under the flags (a flag naming the same table or
    /// model wins).
    pub fn with_config(mut self, section: &crate::config::DjangoSection) -> Self {
        for (table, model) in &section.models {
            let taken = self
                .models
                .iter()
                .any(|(t, m)| t == table || m.eq_ignore_ascii_case(model));
            if !taken {
                self.models.push((table.clone(), model.clone()));
            }
        }
        self
    }
}

/// Django's own models whose `db_table` is not `app_label_model`.
pub(crate) const BUILTIN_TABLES: &[(&str, &str)] = &[
    ("contenttypes.contenttype", "django_content_type"),
    ("sessions.session", "django_session"),
    ("admin.logentry", "django_admin_log"),
    ("sites.site", "django_site"),
    ("redirects.redirect", "django_redirect"),
    ("flatpages.flatpage", "django_flatpage"),
    ("migrations.migration", "django_migrations"),
];

/// The streaming Django reader on bytes in memory, for the `django_reader` fuzz target: how many
/// objects it read, or its error. Not a stable API.
#[doc(hidden)]
pub fn read_objects_for_fuzzing(data: &[u8], jsonl: bool) -> Result<usize> {
    let input: Box<dyn BufRead> = Box::new(std::io::Cursor::new(data.to_vec()));
    let mut n = 0;
    read::for_each_object(input, "<fuzz>", jsonl, &mut |index, obj| {
        assert_eq!(index, n, "objects are numbered in file order");
        let _ = (obj.model.len(), obj.pk.map(|p| p.get().len()));
        for (k, v) in &obj.fields {
            let _ = (k.len(), v.get().len());
        }
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

/// Parses `TABLE=app_label.model`.
pub fn parse_model_mapping(s: &str) -> std::result::Result<(String, String), String> {
    let (table, model) = s
        .split_once('=')
        .ok_or_else(|| format!("expected TABLE=app_label.model, found \"{s}\""))?;
    let (table, model) = (table.trim(), model.trim());
    if table.is_empty() || !valid_model_label(model) {
        return Err(format!("expected TABLE=app_label.model, found \"{s}\""));
    }
    Ok((table.to_string(), model.to_lowercase()))
}

pub(crate) fn valid_model_label(m: &str) -> bool {
    m.split_once('.')
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('.'))
}

/// Compression by extension, as loaddata accepts it.
pub(crate) fn open_decompressed(path: &Path, name: &str) -> Result<Box<dyn BufRead>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(name, e))?;
    let raw = std::io::BufReader::with_capacity(256 * 1024, f);
    let n = path.to_string_lossy().to_lowercase();
    let inner: Box<dyn Read> = if n.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else {
        return Ok(Box::new(raw));
    };
    Ok(Box::new(std::io::BufReader::with_capacity(
        256 * 1024,
        inner,
    )))
}

/// Compression extensions loaddata accepts, besides `.gz` (read streaming): these are
/// decompressed once into a temporary file (see [`spool_decompressed`]).
pub(crate) const SPOOLED: &[&str] = &[".bz2", ".xz", ".lzma", ".zip"];

/// A name without its compression extension.
pub(crate) fn strip_compression(name: &str) -> String {
    let n = name.to_lowercase();
    for ext in SPOOLED.iter().chain(&[".gz"]) {
        if let Some(s) = n.strip_suffix(ext) {
            return s.to_string();
        }
    }
    n
}

/// The name without its compression extension ends in `.jsonl`.
fn is_jsonl_name(name: &str) -> bool {
    strip_compression(name).ends_with(".jsonl")
}

/// Decompresses a `.bz2`, `.xz`, `.lzma` or `.zip` (its one file, as loaddata requires) fixture
/// into a temporary file; None for other names.
pub(crate) fn spool_decompressed(
    path: &Path,
    name: &str,
) -> Result<Option<tempfile::NamedTempFile>> {
    let lower = name.to_lowercase();
    let Some(ext) = SPOOLED.iter().find(|e| lower.ends_with(*e)) else {
        return Ok(None);
    };
    let io = |e: std::io::Error| Error::io(name, e);
    let bad = |m: String| Error::Invalid(format!("{name}: {m}"));
    let f = std::fs::File::open(path).map_err(io)?;
    let mut spool = tempfile::NamedTempFile::new().map_err(io)?;
    {
        let mut out = std::io::BufWriter::new(spool.as_file_mut());
        let mut input = std::io::BufReader::new(f);
        match *ext {
            ".bz2" => {
                std::io::copy(&mut bzip2::read::MultiBzDecoder::new(input), &mut out)
                    .map_err(io)?;
            }
            ".xz" => lzma_rs::xz_decompress(&mut input, &mut out)
                .map_err(|e| bad(format!("not xz data: {e}")))?,
            ".lzma" => lzma_rs::lzma_decompress(&mut input, &mut out)
                .map_err(|e| bad(format!("not lzma data: {e}")))?,
            _ => {
                let mut zip = zip::ZipArchive::new(input.into_inner())
                    .map_err(|e| bad(format!("not a zip archive: {e}")))?;
                if zip.len() != 1 {
                    return Err(bad(format!(
                        "a zipped fixture holds one file, this one holds {}",
                        zip.len()
                    )));
                }
                let mut entry = zip.by_index(0).map_err(|e| bad(e.to_string()))?;
                std::io::copy(&mut entry, &mut out).map_err(io)?;
            }
        }
        out.flush().map_err(io)?;
    }
    Ok(Some(spool))
}

/// Decides a file's format from its first bytes: a top-level array is Django's JSON; an object
/// whose first line is a whole object with a `model` key (or any object in a `.jsonl` file) is
/// Django's JSON Lines; any other object is the native format.
pub(crate) fn detect(path: &Path, name: &str) -> Result<Detected> {
    // Django's dumpdata writes one line for the whole file: look at a bounded prefix only.
    const PROBE: u64 = 1 << 20;
    let r = open_decompressed(path, name)?;
    let mut head = Vec::new();
    r.take(PROBE)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(name, e))?;
    let text = String::from_utf8_lossy(&head);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    let first_line = t.lines().next().unwrap_or("");
    Ok(match t.as_bytes().first() {
        None if is_jsonl_name(name) => Detected::DjangoJsonl,
        // An empty file: the native reader says what is wrong with it.
        None => Detected::Native,
        // An array of objects (or an empty one); any other array is no fixture of either
        // format, and the native reader's message says so.
        Some(b'[')
            if matches!(
                t[1..].trim_start().as_bytes().first(),
                Some(b'{' | b']') | None
            ) =>
        {
            Detected::DjangoJson
        }
        _ if is_jsonl_name(name) => Detected::DjangoJsonl,
        Some(b'{') if looks_like_django_object(first_line) => Detected::DjangoJsonl,
        _ => Detected::Native,
    })
}

fn looks_like_django_object(line: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        model: serde_json::Value,
    }
    serde_json::from_str::<Probe>(line).is_ok_and(|p| p.model.is_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_mappings_parse() {
        assert_eq!(
            parse_model_mapping("legacy_things=shop.Legacy").unwrap(),
            ("legacy_things".into(), "shop.legacy".into())
        );
        assert!(parse_model_mapping("legacy_things").is_err());
        assert!(parse_model_mapping("t=shop").is_err());
        assert!(parse_model_mapping("=shop.x").is_err());
    }

    #[test]
    fn formats_are_told_apart_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, text: &str, want: Detected| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            assert_eq!(detect(&p, name).unwrap(), want, "{name}");
        };
        check("a.json", "\n [{\"model\": \"a.b\"}]", Detected::DjangoJson);
        check("b.json", "[]", Detected::DjangoJson);
        check("b2.json", "[1, 2]", Detected::Native);
        check("c.json", "{\"t\": [{\"id\": 1}]}", Detected::Native);
        check(
            "d.json",
            "{\"model\": \"a.b\", \"pk\": 1, \"fields\": {}}\n",
            Detected::DjangoJsonl,
        );
        check("e.jsonl", "{\"model\": 1}\n", Detected::DjangoJsonl);
        check("f.json", "{\"model\": [{\"id\": 1}]}", Detected::Native);
    }
}

/// Running the backends' statements with their one bound text (never spliced into SQL).
pub(crate) mod bound {
    use diesel::sql_types::{Nullable, Text};
    use diesel::RunQueryDsl;

    use crate::backend::Connection;
    use crate::error::{describe_diesel, Error, Result};

    #[derive(diesel::QueryableByName)]
    struct JsonText {
        #[diesel(sql_type = Nullable<Text>)]
        j: Option<String>,
    }

    /// Runs `sql` with `value` bound to its one parameter.
    pub(crate) fn execute(conn: &mut Connection, sql: &str, value: &str, what: &str) -> Result<()> {
        let q = diesel::sql_query(sql).bind::<Text, _>(value);
        match conn {
            Connection::Pg(c) => q.execute(c).map(|_| ()),
            Connection::Sqlite(c) => q.execute(c).map(|_| ()),
        }
        .map_err(|e| Error::db(what, describe_diesel(&e)))
    }

    /// The `j` column of the first row of `sql` with `value` bound, None without a row.
    pub(crate) fn query(
        conn: &mut Connection,
        sql: &str,
        value: &str,
        what: &str,
    ) -> Result<Option<String>> {
        let q = diesel::sql_query(sql).bind::<Text, _>(value);
        let rows: Vec<JsonText> = match conn {
            Connection::Pg(c) => q.load(c),
            Connection::Sqlite(c) => q.load(c),
        }
        .map_err(|e| Error::db(what, describe_diesel(&e)))?;
        Ok(rows.into_iter().next().and_then(|r| r.j))
    }
}
