//! The database's shape, read at run time: tables, columns, keys, foreign keys and the sequences
//! that feed columns. Nothing in the tool is generated per table; every command works from this.
//!
//! Invariants:
//! - Read in a handful of queries whatever the number of tables (see `pg.rs` / `sqlite.rs`).
//! - `tables` holds each loadable table once: partitions are represented by their partitioned
//!   parent; views, extension-owned tables and diesel's migration bookkeeping table
//!   (`__diesel_schema_migrations`, like Django's `django_migrations`) are not included.
//! - A table's fixture key is `table` when it lives in the connection's default schema, else
//!   `schema.table`; a part containing `.` or `"` is double-quoted with `""` escaping. The same
//!   syntax is accepted wherever a user names a table.

pub mod pg;
pub mod sqlite;

use serde::Deserialize;

use crate::backend::Connection;
use crate::error::{Error, Result};

/// diesel's record of applied migrations: tool metadata, not data (kept out of dumps and loads).
pub const MIGRATIONS_TABLE: &str = "__diesel_schema_migrations";

/// A table's schema-qualified name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    /// `"schema"."name"`, always quoted, for SQL text.
    pub fn sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Identity {
    #[serde(rename = "a")]
    Always,
    #[serde(rename = "d")]
    ByDefault,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    pub name: String,
    /// The declared type as the database prints it (`integer`, `numeric(10,2)`, `text[]`).
    #[serde(rename = "type")]
    pub type_name: String,
    /// How values of this column are written to and read from JSON (see `format`).
    #[serde(default)]
    pub kind: ValueKind,
    /// PostgreSQL: the OID of the column's base type (domains unwrapped, as for `kind`); `None`
    /// when still a domain after the catalog's two levels of unwrapping, and on SQLite.
    #[serde(default)]
    pub base_type: Option<u32>,
    pub nullable: bool,
    pub default: Option<String>,
    /// A generated (computed) column: never written, never loaded.
    pub generated: bool,
    pub identity: Option<Identity>,
}

/// How a column's values are represented in a fixture. The catalog decides this from the type
/// (after unwrapping domains), so dump and load agree by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// Integers: a JSON number, copied digit for digit.
    Integer,
    /// numeric / float: a JSON number, or the string "NaN" / "Infinity" / "-Infinity".
    Number,
    Boolean,
    /// json: the stored text verbatim (key order, duplicates and spelling kept).
    Json,
    /// jsonb: nested JSON.
    Jsonb,
    /// bytea: "\\x..." hex string (PostgreSQL's own JSON rendering).
    Bytes,
    /// Types whose JSON form is not their text form (arrays, composites, hstore, ...): the
    /// server renders them with to_json and parses them back with json_populate_record.
    Structured,
    /// Timestamps and dates: PostgreSQL's JSON rendering (ISO 8601 with `T`).
    DateTime,
    /// Everything else: the type's text form as a JSON string.
    #[default]
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TableKind {
    #[serde(rename = "r")]
    Ordinary,
    #[serde(rename = "p")]
    Partitioned,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Table {
    pub name: QualifiedName,
    pub kind: TableKind,
    pub columns: Vec<Column>,
    /// Primary key columns in key order; empty when the table has none.
    pub primary_key: Vec<String>,
    /// Other unique constraints / unique indexes usable as a conflict target.
    #[serde(default)]
    pub unique: Vec<Vec<String>>,
    /// The planner's row estimate (progress bars only; never trusted for correctness).
    #[serde(default)]
    pub estimated_rows: f64,
    /// SQLite only: the table uses AUTOINCREMENT (has a `sqlite_sequence` entry).
    #[serde(default)]
    pub autoincrement: bool,
    /// Filled in by [`Catalog`]: the key used in fixtures and messages.
    #[serde(skip)]
    pub key: String,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The table's own rows in SQL (`FROM`, `TRUNCATE`, `DELETE`): `ONLY "s"."t"` for a plain
    /// table, whose inheritance children are tables of their own; a partitioned parent stands
    /// for its partitions.
    pub fn own_rows_sql(&self) -> String {
        match self.kind {
            TableKind::Ordinary => format!("ONLY {}", self.name.sql()),
            TableKind::Partitioned => self.name.sql(),
        }
    }

    /// Columns whose values appear in fixtures (generated columns are recomputed by the database).
    pub fn stored_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| !c.generated)
    }

    /// The primary key's columns by their place among [`Table::stored_columns`] (in a dumped
    /// row), in key order; empty when the table has no key or a key column is not stored (a
    /// partial key would name a row wrongly).
    pub fn stored_key_positions(&self) -> Vec<usize> {
        self.primary_key
            .iter()
            .map(|k| self.stored_columns().position(|c| &c.name == k))
            .collect::<Option<_>>()
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub table: QualifiedName,
    pub columns: Vec<String>,
    pub ref_table: QualifiedName,
    pub ref_columns: Vec<String>,
    pub deferrable: bool,
}

/// A column a sequence feeds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SequenceUse {
    pub table: QualifiedName,
    pub column: String,
    /// The column's [`ValueKind`], as its [`Column`] in the table has it: realignment compares
    /// only numeric columns with the sequence, and reads it without the tables' columns.
    pub kind: ValueKind,
}

/// A sequence that feeds a column. `feeds` lists the columns of catalog tables it feeds, which
/// may be none (a sequence used only by a view or an extension's table). On SQLite the
/// "sequence" is the table's `sqlite_sequence` row (name = the table's name, increment 1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Sequence {
    pub name: QualifiedName,
    #[serde(deserialize_with = "de_i128")]
    pub start: i128,
    #[serde(deserialize_with = "de_i128")]
    pub increment: i128,
    #[serde(deserialize_with = "de_i128")]
    pub min: i128,
    #[serde(deserialize_with = "de_i128")]
    pub max: i128,
    /// CYCLE: past its bound it wraps around instead of failing.
    #[serde(default)]
    pub cycle: bool,
    pub feeds: Vec<SequenceUse>,
}

/// Sequence bounds arrive as text so that no value goes through a float.
fn de_i128<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// Everything the tool knows about a database's shape.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The schema unqualified names resolve to (first of the search_path; `main` on SQLite).
    pub default_schema: String,
    pub tables: Vec<Table>,
    pub foreign_keys: Vec<ForeignKey>,
    pub sequences: Vec<Sequence>,
}

impl Catalog {
    /// Reads the catalog of the connected database.
    pub fn read(conn: &mut Connection) -> Result<Catalog> {
        let cat = match conn {
            Connection::Pg(_) => pg::read(conn)?,
            Connection::Sqlite(_) => sqlite::read(conn)?,
        };
        Ok(cat.finish())
    }

    /// The part of the catalog that sequence realignment works from, read faster: the same
    /// tables (names, kinds and keys, so `find` and `select` answer as on the full catalog) and
    /// the same sequences with the columns they feed, but tables without columns or keys and no
    /// foreign keys. On PostgreSQL the columns are most of the full read's cost; SQLite reads
    /// the full catalog (it is cheap there).
    pub fn read_for_sequences(conn: &mut Connection) -> Result<Catalog> {
        let cat = match conn {
            Connection::Pg(_) => pg::read_for_sequences(conn)?,
            Connection::Sqlite(_) => sqlite::read(conn)?,
        };
        Ok(cat.finish())
    }

    /// Sorts the tables and gives them their keys.
    fn finish(mut self) -> Catalog {
        self.tables.sort_by(|a, b| a.name.cmp(&b.name));
        for t in &mut self.tables {
            t.key = table_key(&t.name, &self.default_schema);
        }
        self
    }

    pub fn table_index(&self, name: &QualifiedName) -> Option<usize> {
        self.tables.binary_search_by(|t| t.name.cmp(name)).ok()
    }

    pub fn table(&self, name: &QualifiedName) -> Option<&Table> {
        self.table_index(name).map(|i| &self.tables[i])
    }

    /// The foreign keys between tables of `subset` (catalog indices), as (index into
    /// `foreign_keys`, child position in `subset`, parent position in `subset`).
    pub fn foreign_keys_within(&self, subset: &[usize]) -> Vec<(usize, usize, usize)> {
        let pos = |name| {
            self.table_index(name)
                .and_then(|i| subset.iter().position(|&s| s == i))
        };
        self.foreign_keys
            .iter()
            .enumerate()
            .filter_map(|(fi, fk)| Some((fi, pos(&fk.table)?, pos(&fk.ref_table)?)))
            .collect()
    }

    /// Finds a table by a user-supplied name (`table`, `schema.table`, quoted parts allowed).
    /// An unqualified name resolves in the default schema first, then in any schema where it is
    /// unique.
    pub fn find(&self, user_name: &str) -> Result<usize> {
        let unknown = |hint: String| Error::UnknownTable {
            name: user_name.to_string(),
            hint,
        };
        let parts = split_name(user_name).map_err(|m| unknown(format!(" ({m})")))?;
        match parts.as_slice() {
            [schema, name] => self
                .table_index(&QualifiedName {
                    schema: schema.clone(),
                    name: name.clone(),
                })
                .ok_or_else(|| unknown(self.suggest(name))),
            [name] => {
                if let Some(i) = self.table_index(&QualifiedName {
                    schema: self.default_schema.clone(),
                    name: name.clone(),
                }) {
                    return Ok(i);
                }
                let found: Vec<usize> = (0..self.tables.len())
                    .filter(|&i| &self.tables[i].name.name == name)
                    .collect();
                match found.as_slice() {
                    [i] => Ok(*i),
                    [] => Err(unknown(self.suggest(name))),
                    many => Err(unknown(format!(
                        " (ambiguous: qualify it as one of {})",
                        many.iter()
                            .map(|&i| self.tables[i].key.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))),
                }
            }
            _ => Err(unknown(" (expected table or schema.table)".into())),
        }
    }

    /// Tables chosen by `--table` / `--exclude-table` patterns (`*` and `?` globs; matched
    /// against the fixture key, `schema.table` and the bare name) and `--schema` names, in
    /// catalog order. A pattern that matches no table is an error, so a typo is never a silently
    /// smaller dump.
    pub fn select(
        &self,
        include: &[String],
        exclude: &[String],
        schemas: &[String],
    ) -> Result<Vec<usize>> {
        for s in schemas {
            if !self.tables.iter().any(|t| &t.name.schema == s) {
                return Err(Error::Invalid(format!("no table in schema {s}")));
            }
        }
        let matches = |pattern: &str, t: &Table| {
            let qualified = format!("{}.{}", t.name.schema, t.name.name);
            [t.key.as_str(), qualified.as_str(), t.name.name.as_str()]
                .iter()
                .any(|cand| glob_match(pattern, cand))
        };
        for p in include.iter().chain(exclude) {
            if !p.contains(['*', '?']) {
                self.find(p)?;
            } else if !self.tables.iter().any(|t| matches(p, t)) {
                return Err(Error::UnknownTable {
                    name: p.clone(),
                    hint: " (the pattern matches no table)".into(),
                });
            }
        }
        let included = |i: usize, t: &Table| {
            if include.is_empty() {
                return true;
            }
            include.iter().any(|p| {
                if p.contains(['*', '?']) {
                    matches(p, t)
                } else {
                    self.find(p).ok() == Some(i)
                }
            })
        };
        let excluded = |i: usize, t: &Table| {
            exclude.iter().any(|p| {
                if p.contains(['*', '?']) {
                    matches(p, t)
                } else {
                    self.find(p).ok() == Some(i)
                }
            })
        };
        Ok(self
            .tables
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                (schemas.is_empty() || schemas.contains(&t.name.schema))
                    && included(*i, t)
                    && !excluded(*i, t)
            })
            .map(|(i, _)| i)
            .collect())
    }

    fn suggest(&self, name: &str) -> String {
        let lower = name.to_lowercase();
        let close: Vec<&str> = self
            .tables
            .iter()
            .filter(|t| t.name.name.to_lowercase() == lower || t.name.name.contains(name))
            .map(|t| t.key.as_str())
            .take(3)
            .collect();
        if close.is_empty() {
            String::new()
        } else {
            format!(" (did you mean {}?)", close.join(", "))
        }
    }
}

/// Shell-style glob with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Quotes an identifier for SQL: always double-quoted, embedded quotes doubled. Used for every
/// identifier the tool sends, so a hostile name stays a name.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a string literal for SQL text that cannot take bind parameters (dry-run output).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The fixture key of a table (see the module doc).
pub fn table_key(name: &QualifiedName, default_schema: &str) -> String {
    let part = |s: &str| {
        if s.contains('.') || s.contains('"') {
            quote_ident(s)
        } else {
            s.to_string()
        }
    };
    if name.schema == default_schema {
        part(&name.name)
    } else {
        format!("{}.{}", part(&name.schema), part(&name.name))
    }
}

/// Splits `a.b`, `"a.x"."b"` and `b` into their parts, unquoting as it goes.
pub fn split_name(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted_part = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if cur.is_empty() && !quoted_part => {
                quoted_part = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            cur.push('"');
                        }
                        Some('"') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err("unterminated quote".into()),
                    }
                }
                match chars.peek() {
                    None | Some('.') => {}
                    Some(_) => return Err("text after a closing quote".into()),
                }
            }
            '.' => {
                if cur.is_empty() && !quoted_part {
                    return Err("empty name part".into());
                }
                parts.push(std::mem::take(&mut cur));
                quoted_part = false;
            }
            c => cur.push(c),
        }
    }
    if cur.is_empty() && !quoted_part {
        return Err("empty name part".into());
    }
    parts.push(cur);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qn(s: &str, n: &str) -> QualifiedName {
        QualifiedName {
            schema: s.into(),
            name: n.into(),
        }
    }

    #[test]
    fn keys_quote_only_when_needed_and_split_back() {
        assert_eq!(table_key(&qn("public", "users"), "public"), "users");
        assert_eq!(table_key(&qn("sales", "users"), "public"), "sales.users");
        assert_eq!(
            table_key(&qn("a.b", "we\"ird.t"), "public"),
            "\"a.b\".\"we\"\"ird.t\""
        );
        for (s, n) in [
            ("public", "x"),
            ("a.b", "c"),
            ("s", "we\"ird.t"),
            ("s p", "My Table"),
        ] {
            let key = table_key(&qn(s, n), "none");
            assert_eq!(
                split_name(&key).unwrap(),
                vec![s.to_string(), n.to_string()]
            );
        }
        assert!(split_name("a..b").is_err());
        assert!(split_name("\"open").is_err());
        assert_eq!(split_name("\"\"").unwrap(), vec![String::new()]);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("user*", "users"));
        assert!(glob_match("sales.*", "sales.orders"));
        assert!(glob_match("?_log", "a_log"));
        assert!(!glob_match("user*", "app_users"));
        assert!(glob_match("*_tmp_*", "x_tmp_y"));
        assert!(!glob_match("a*b", "acbx"));
    }

    #[test]
    fn quote_ident_doubles_quotes() {
        assert_eq!(
            quote_ident("x\"; DROP TABLE y; --"),
            "\"x\"\"; DROP TABLE y; --\""
        );
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
