//! The one error type of the library.
//!
//! Every variant carries the context a user needs to find the problem without a debugger: the
//! file, table, row (index and key) and column where it applies, and URLs only in their redacted
//! form (see [`crate::backend::redact_url`]). Errors are created where the context is known and
//! printed once, by the binary, to stderr.

use std::fmt;
use std::path::PathBuf;

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in the input a fixture problem was found. Every part is optional because problems are
/// found at different depths (a JSON syntax error has a line but no row yet; a constraint
/// violation has a table and row but no line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column_no: Option<usize>,
    pub table: Option<String>,
    /// Zero-based index of the row within its table's array in the file.
    pub row: Option<usize>,
    /// The row's key, rendered as `id=7` or `(a, b)=(1, 2)`.
    pub key: Option<String>,
    pub column: Option<String>,
}

impl Location {
    /// A row's key as [`Location::key`] shows it: `id=7`, or `(a, b)=(1, "x")` for a composite
    /// key; `values` are the key columns' values as written in JSON, in `names`' order.
    pub(crate) fn key_text<S: AsRef<str>>(names: &[String], values: &[S]) -> String {
        let values: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
        match (names, values.as_slice()) {
            ([name], [value]) => format!("{name}={value}"),
            _ => format!("({})=({})", names.join(", "), values.join(", ")),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(file) = &self.file {
            let mut s = file.clone();
            if let Some(line) = self.line {
                s.push_str(&format!(":{line}"));
                if let Some(col) = self.column_no {
                    s.push_str(&format!(":{col}"));
                }
            }
            parts.push(s);
        }
        if let Some(t) = &self.table {
            parts.push(format!("table {t}"));
        }
        if let Some(r) = self.row {
            match &self.key {
                Some(k) => parts.push(format!("row {r} ({k})")),
                None => parts.push(format!("row {r}")),
            }
        } else if let Some(k) = &self.key {
            parts.push(format!("row {k}"));
        }
        if let Some(c) = &self.column {
            parts.push(format!("column {c}"));
        }
        f.write_str(&parts.join(", "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no database URL: pass --database-url, set DATABASE_URL, or put DATABASE_URL in a .env file"
    )]
    NoDatabaseUrl,

    #[error("unsupported database URL {url}: {reason}")]
    BadUrl { url: String, reason: String },

    /// `target` names host, port and database; never the password.
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },

    /// A database error with what we were doing when it happened.
    #[error("{context}: {message}")]
    Database { context: String, message: String },

    #[error("unknown table {name}{hint}")]
    UnknownTable { name: String, hint: String },

    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// Bad fixture input: malformed JSON, unknown column, wrong type, constraint violation.
    #[error("{location}: {message}")]
    Fixture {
        location: Box<Location>,
        message: String,
    },

    /// A sequence cannot be placed past the column values (MAXVALUE/MINVALUE reached).
    #[error("sequence {sequence}: {message}")]
    Sequence { sequence: String, message: String },

    #[error("{0}")]
    Invalid(String),

    #[error("migrations in {dir}: {message}")]
    Migration { dir: PathBuf, message: String },

    /// A configuration file that cannot be read as one (see [`crate::config`]).
    #[error("config file {}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    /// A subset dump that grew past `--max-rows` (see [`crate::subset`]); nothing was written.
    #[error(
        "the subset would have more than {max} rows ({total} after {rounds} rounds of following \
         foreign keys), so nothing was written. Grew most: {grew}. Cut a hub with \
         --exclude-table or --no-children, narrow the --where, or raise --max-rows (0: no limit)"
    )]
    SubsetTooLarge {
        max: u64,
        total: u64,
        rounds: usize,
        grew: String,
    },

    /// A masking rule that cannot be applied (see [`crate::mask`]); found before any output.
    #[error("mask {rule} ({origin}): {message}")]
    Mask {
        rule: String,
        /// `--mask` or the config file's path.
        origin: String,
        message: String,
    },

    /// The server connection went away mid-run (server restart, `pg_terminate_backend`, network):
    /// the server rolls the open transaction back, so nothing of the run is committed.
    #[error("lost the connection to the server while {during}: {message}; nothing was committed")]
    ConnectionLost { during: String, message: String },

    /// A problem with one object of a Django fixture (`format::django`).
    #[error("{location}: {message}")]
    DjangoObject {
        location: Box<DjangoLocation>,
        message: String,
    },
}

/// Where in a Django fixture: the file, the object's index (0-based) in it, its model and pk, and
/// the field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DjangoLocation {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub object: Option<usize>,
    pub model: Option<String>,
    pub pk: Option<String>,
    pub field: Option<String>,
}

impl fmt::Display for DjangoLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(i) = self.object {
            write!(f, ", object {i}")?;
        }
        match (&self.model, &self.pk) {
            (Some(m), Some(pk)) => write!(f, " ({m} pk={pk})")?,
            (Some(m), None) => write!(f, " ({m})")?,
            _ => {}
        }
        if let Some(field) = &self.field {
            write!(f, ", field {field}")?;
        }
        Ok(())
    }
}

impl Error {
    pub(crate) fn db(context: impl Into<String>, e: impl fmt::Display) -> Self {
        Error::Database {
            context: context.into(),
            message: e.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Attach a description of the current step to diesel errors.
pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, diesel::result::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::db(what(), describe_diesel(&e)))
    }
}

/// diesel's Display for database errors shows only the primary message; PostgreSQL's detail and
/// hint are often what tells the user which row was wrong, so include them.
pub(crate) fn describe_diesel(e: &diesel::result::Error) -> String {
    match e {
        diesel::result::Error::DatabaseError(_, info) => {
            let mut s = info.message().to_string();
            if let Some(d) = info.details() {
                s.push_str(&format!(" ({d})"));
            }
            if let Some(h) = info.hint() {
                s.push_str(&format!(" hint: {h}"));
            }
            s
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_lists_every_known_part_in_order() {
        let loc = Location {
            file: Some("f.json".into()),
            line: Some(3),
            column_no: Some(9),
            table: Some("public.users".into()),
            row: Some(2),
            key: Some("id=7".into()),
            column: Some("email".into()),
        };
        assert_eq!(
            loc.to_string(),
            "f.json:3:9, table public.users, row 2 (id=7), column email"
        );
        assert_eq!(Location::default().to_string(), "");
    }
}
