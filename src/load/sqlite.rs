//! SQLite loading: one prepared statement per column set, run once per row with the row's values
//! bound, so a failing row is known exactly (no replay) and values never pass through SQL text.
//!
//! Statements per column set (the "batch": a run of rows with the same columns; omitted columns
//! take their defaults, generated columns are never written):
//! - insert / replace: `INSERT INTO t (cols) VALUES (?, ...)`;
//! - upsert with a key (the primary key, else the first unique constraint whose columns are all
//!   in the row): `INSERT ... ON CONFLICT (key) DO NOTHING` (one change: inserted), and when the
//!   key exists `INSERT ... ON CONFLICT (key) DO UPDATE SET ... WHERE <some column differs>`
//!   (one change: updated, none: unchanged). Columns compare with `IS NOT ... COLLATE BINARY`,
//!   which applies the column's affinity like the stored value got it, so a re-run of the same
//!   fixture writes nothing;
//! - upsert without a key: the plain `INSERT` for the n-th copy of a row in the batch unless the
//!   table held n identical rows before it (counted once per distinct row), so duplicates all
//!   load and a re-run adds nothing.
//!
//! diesel caches each distinct statement text (with its bind types), so every statement is
//! prepared once per load.
//!
//! Values are bound according to the column's affinity (<https://sqlite.org/datatype3.html>),
//! see [`bind_value`]. Foreign keys are checked per statement (SQLite checks a non-deferred
//! foreign key at the end of each statement, which with one row per statement names the row).
//! When the loaded tables contain a foreign-key cycle or a self-reference, the loader turns on
//! `PRAGMA defer_foreign_keys` for the transaction instead, so rows may reference rows loaded
//! later; [`check_deferred`] then runs `PRAGMA foreign_key_check` on the loaded tables and
//! reports violations before sequences move; it does the same when a loaded table declares a
//! key `DEFERRABLE INITIALLY DEFERRED` (SQLite checks those only at COMMIT, without naming the
//! row). Because SQLite can defer every foreign key, the generic cycle breaking (loading columns
//! as NULL and filling them in afterwards) is never used here: `load::load_order` treats every
//! SQLite foreign key as deferrable, and `TablePlan::null_columns` is always empty.

use std::borrow::Cow;

use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::query_dsl::methods::ExecuteDsl;
use diesel::sql_types::{BigInt, Binary, Double, Nullable, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::QueryResult;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::rows::{resolve, RowStream};
use super::{Fixup, Mode, TableCounts, TablePlan};
use crate::backend::Connection;
use crate::catalog::{quote_ident, quote_literal, Catalog, Column, Table, ValueKind};
use crate::error::{describe_diesel, Error, Location, Result};
use crate::format::value::json_wrapper;
use crate::order::{self, FkEdge};
use crate::progress::Progress;

fn sqlite(conn: &mut Connection) -> Result<&mut SqliteConnection> {
    match conn {
        Connection::Sqlite(c) => Ok(c),
        Connection::Pg(_) => Err(Error::Invalid(
            "internal error: SQLite load code called on a PostgreSQL connection".into(),
        )),
    }
}

/// Defers every foreign key for the rest of the transaction when the loaded tables need it
/// (a cycle or a self-reference among them); see the module doc.
///
/// Also raises the connection's page cache to 16 MiB (SQLite's default is 2 MiB): a large load
/// otherwise spends a third of its time writing out and re-reading index pages. Not more: the
/// cache is most of the process's memory (32 MiB made a 4.6 M-row load peak at 41 MiB RSS, 16 MiB
/// at 24 MiB, no slower).
pub(super) fn prepare(conn: &mut Connection, catalog: &Catalog, tables: &[usize]) -> Result<()> {
    conn.execute("PRAGMA cache_size = -16384")?;
    if needs_deferral(catalog, tables) {
        conn.execute("PRAGMA defer_foreign_keys = ON")?;
    }
    Ok(())
}

/// Whether rows of the loaded tables may reference rows loaded after them: a self-reference, or
/// a cycle of foreign keys between loaded tables.
fn needs_deferral(catalog: &Catalog, tables: &[usize]) -> bool {
    let pos = |name| {
        catalog
            .table_index(name)
            .and_then(|i| tables.iter().position(|&t| t == i))
    };
    let mut edges = Vec::new();
    for fk in &catalog.foreign_keys {
        let (Some(child), Some(parent)) = (pos(&fk.table), pos(&fk.ref_table)) else {
            continue;
        };
        if child == parent {
            return true;
        }
        edges.push(FkEdge {
            child,
            parent,
            name: fk.name.clone(),
            columns_nullable: false,
            deferrable: true,
        });
    }
    match order::load_order(tables.len(), &edges) {
        Ok(lo) => !lo.deferred.is_empty(),
        Err(_) => true,
    }
}

#[derive(Deserialize)]
struct Violation {
    rowid: Option<i64>,
    fkid: i64,
}

/// With deferred foreign keys (ours, or declared `INITIALLY DEFERRED`), finds the rows that
/// still violate one (SQLite would only say
/// "FOREIGN KEY constraint failed" at COMMIT) and reports them with their keys. Checked: every
/// loaded table, and tables referencing a loaded table through columns other than its primary
/// key (an upsert may change those). Without deferral every row was checked when written.
pub(super) fn check_deferred(
    conn: &mut Connection,
    catalog: &Catalog,
    tables: &[usize],
) -> Result<()> {
    if !needs_deferral(catalog, tables) && !declares_deferred_keys(conn, catalog, tables)? {
        return Ok(());
    }
    let mut check: Vec<usize> = tables.to_vec();
    for fk in &catalog.foreign_keys {
        let (Some(child), Some(parent)) = (
            catalog.table_index(&fk.table),
            catalog.table_index(&fk.ref_table),
        ) else {
            continue;
        };
        if tables.contains(&parent)
            && !check.contains(&child)
            && fk.ref_columns != catalog.tables[parent].primary_key
        {
            check.push(child);
        }
    }
    check.sort_unstable();
    let mut found: Vec<(usize, Violation)> = Vec::new();
    let mut total = 0usize;
    for &t in &check {
        let table = &catalog.tables[t];
        let v: Vec<Violation> = conn.query_json(&format!(
            "SELECT json_group_array(json_object('rowid', rowid, 'fkid', fkid)) AS j \
             FROM pragma_foreign_key_check({}, 'main')",
            quote_literal(&table.name.name)
        ))?;
        total += v.len();
        found.extend(v.into_iter().map(|v| (t, v)));
    }
    let Some((t, first)) = found.first() else {
        return Ok(());
    };
    let (location, message) = describe_violation(conn, catalog, *t, first)?;
    let mut message = message;
    if total > 1 {
        let others: Vec<String> = found[1..]
            .iter()
            .take(4)
            .map(|(t, v)| match describe_violation(conn, catalog, *t, v) {
                Ok((loc, _)) => loc.to_string(),
                Err(_) => catalog.tables[*t].key.clone(),
            })
            .collect();
        message.push_str(&format!(
            "; {} rows violate foreign keys in all (also: {}{})",
            total,
            others.join("; "),
            if total > 5 { "; ..." } else { "" }
        ));
    }
    Err(Error::Fixture {
        location: Box::new(location),
        message,
    })
}

/// Whether a loaded table declares a foreign key `DEFERRABLE INITIALLY DEFERRED` (Django does for
/// every key): SQLite checks those only at COMMIT, without saying which row, so they are checked
/// here like deferred ones. The pragmas do not report deferrability; the CREATE statement is
/// searched for the word, which at worst costs an unneeded check.
fn declares_deferred_keys(
    conn: &mut Connection,
    catalog: &Catalog,
    tables: &[usize],
) -> Result<bool> {
    if tables.is_empty() {
        return Ok(false);
    }
    let names: Vec<String> = tables
        .iter()
        .map(|&t| quote_literal(&catalog.tables[t].name.name))
        .collect();
    let found: i64 = conn.query_json(&format!(
        "SELECT CAST(EXISTS (SELECT 1 FROM main.sqlite_master WHERE type = 'table' \
         AND name IN ({}) AND sql LIKE '%INITIALLY%DEFERRED%') AS TEXT) AS j",
        names.join(", ")
    ))?;
    Ok(found != 0)
}

/// Where a violating row is (table, key, column) and what is wrong with it.
fn describe_violation(
    conn: &mut Connection,
    catalog: &Catalog,
    t: usize,
    v: &Violation,
) -> Result<(Location, String)> {
    let table = &catalog.tables[t];
    let fk_name = format!("fk_{}_{}", table.name.name, v.fkid);
    let fk = catalog
        .foreign_keys
        .iter()
        .find(|f| f.table == table.name && f.name == fk_name);
    let mut location = Location {
        table: Some(table.key.clone()),
        column: fk.map(|f| f.columns.join(", ")),
        ..Default::default()
    };
    let Some(fk) = fk else {
        return Ok((location, "violates a foreign key".into()));
    };
    let parent = catalog
        .table(&fk.ref_table)
        .map(|p| p.key.clone())
        .unwrap_or_else(|| fk.ref_table.name.clone());
    let mut values = String::new();
    if let Some(rowid) = v.rowid {
        let cols: Vec<&String> = table.primary_key.iter().chain(&fk.columns).collect();
        let exprs: Vec<String> = cols
            .iter()
            .map(|c| format!("quote({})", quote_ident(c)))
            .collect();
        let vals: Option<Vec<String>> = conn.query_json(&format!(
            "SELECT json_array({}) AS j FROM {} WHERE rowid = {rowid}",
            exprs.join(", "),
            table.name.sql()
        ))?;
        if let Some(vals) = vals {
            let (pk, fkv) = vals.split_at(table.primary_key.len());
            if !pk.is_empty() {
                location.key = Some(render_key(&table.primary_key, pk));
            } else {
                location.key = Some(format!("rowid={rowid}"));
            }
            values = format!(" {}", render_key(&fk.columns, fkv));
        }
    }
    Ok((
        location,
        format!(
            "foreign key {} violated:{values} has no matching row in {parent} ({})",
            fk.name,
            fk.ref_columns.join(", ")
        ),
    ))
}

/// `id=7` or `(a, b)=(1, 'x')`.
fn render_key(names: &[String], values: &[String]) -> String {
    if names.len() == 1 {
        format!("{}={}", names[0], values[0])
    } else {
        format!("({})=({})", names.join(", "), values.join(", "))
    }
}

pub(super) fn database_name(conn: &mut Connection) -> Result<String> {
    let file: Option<String> = conn
        .query_json("SELECT json_quote(file) AS j FROM pragma_database_list WHERE name = 'main'")?;
    let file = file.unwrap_or_default();
    if file.is_empty() {
        return Ok("in-memory temp database".into());
    }
    Ok(std::path::Path::new(&file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(file))
}

pub(super) fn is_empty(conn: &mut Connection, table: &Table) -> Result<bool> {
    let n: i64 = conn.query_json(&format!(
        "SELECT CAST(EXISTS (SELECT 1 FROM {}) AS TEXT) AS j",
        table.name.sql()
    ))?;
    Ok(n == 0)
}

/// `replace`: empties the tables (DELETE, children first; the caller has already refused when
/// rows of other tables reference them).
pub(super) fn empty_tables(
    conn: &mut Connection,
    catalog: &Catalog,
    tables: &[usize],
) -> Result<()> {
    // Children before parents, so that no statement leaves a dangling reference behind.
    let edges: Vec<FkEdge> = catalog
        .foreign_keys_within(tables)
        .into_iter()
        .map(|(fi, child, parent)| FkEdge {
            child,
            parent,
            name: catalog.foreign_keys[fi].name.clone(),
            columns_nullable: false,
            deferrable: true,
        })
        .collect();
    let order: Vec<usize> = match order::load_order(tables.len(), &edges) {
        Ok(o) => o.tables,
        Err(_) => (0..tables.len()).collect(),
    };
    for &i in order.iter().rev() {
        let table = &catalog.tables[tables[i]];
        conn.execute(&format!("DELETE FROM {}", table.name.sql()))
            .map_err(|e| match e {
                Error::Database { message, .. } => Error::Database {
                    context: format!("emptying table {} for --mode replace", table.key),
                    message,
                },
                other => other,
            })?;
    }
    Ok(())
}

/// Never called: SQLite foreign keys are deferred instead of broken (see the module doc).
pub(super) fn apply_fixup(_conn: &mut Connection, catalog: &Catalog, f: &Fixup) -> Result<()> {
    Err(Error::Invalid(format!(
        "internal error: a foreign-key fill-in was planned for SQLite table {}",
        catalog.tables[f.table].key
    )))
}

// ---------------------------------------------------------------------------------------------
// Values

/// A column's type affinity, from its declared type, by SQLite's own rules
/// (<https://sqlite.org/datatype3.html#determination_of_column_affinity>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Affinity {
    Integer,
    Text,
    /// Also "no type": values are stored as given.
    Blob,
    Real,
    Numeric,
}

pub(crate) fn affinity(declared: &str) -> Affinity {
    let t = declared.to_ascii_uppercase();
    let has = |s: &str| t.contains(s);
    if has("INT") {
        Affinity::Integer
    } else if has("CHAR") || has("CLOB") || has("TEXT") {
        Affinity::Text
    } else if has("BLOB") || t.trim().is_empty() {
        Affinity::Blob
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
}

/// A value ready to bind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind<'r> {
    Null,
    Int(i64),
    Real(f64),
    Text(Cow<'r, str>),
    Blob(Vec<u8>),
}

/// How a fixture value is bound for a column (the README's SQLite section documents the same):
/// - `null` → NULL.
/// - json/jsonb columns: the document's text (`{"$json": X}` → X's text), like PostgreSQL.
/// - strings → text; `"Infinity"` / `"-Infinity"` in a REAL / NUMERIC column → ±infinity
///   (`"NaN"` is an error: SQLite stores NaN as NULL); in a BLOB column (or a column with no type) a `"\\x0a1b"` string is
///   decoded to bytes (PostgreSQL's bytea rendering); other strings stay text.
/// - numbers → TEXT affinity: the text exactly as spelled (`12.50` stays `12.50`); REAL: a
///   double (Rust's correctly rounded parse); INTEGER / NUMERIC / no type: an integer literal
///   as a 64-bit integer (beyond that range is an error: SQLite would store a rounded REAL),
///   other literals as a double (INTEGER, no type) or as spelled (NUMERIC, where SQLite then
///   applies its numeric conversion exactly as for a literal in SQL).
/// - `true` / `false` → 1 / 0.
/// - objects and arrays → their JSON text, in text columns (SQLite keeps JSON as text);
///   an error in integer, real, numeric, boolean and BLOB columns.
///
/// `aff` is `affinity(&col.type_name)`, computed once per table by the caller.
pub(crate) fn bind_value<'r>(
    col: &Column,
    aff: Affinity,
    raw: &'r RawValue,
) -> std::result::Result<Bind<'r>, String> {
    let text = raw.get();
    let first = text.as_bytes().first().copied().unwrap_or(b'n');
    if matches!(col.kind, ValueKind::Json | ValueKind::Jsonb) {
        if text == "null" {
            return Ok(Bind::Null);
        }
        if first == b'{' {
            if let Some(inner) = json_wrapper(text.as_bytes()) {
                return Ok(Bind::Text(Cow::Borrowed(inner.get())));
            }
        }
        return Ok(Bind::Text(Cow::Borrowed(text)));
    }
    let expected = || {
        format!(
            "expected {}, found {}",
            kind_word(col.kind),
            match first {
                b'{' => "a JSON object".to_string(),
                b'[' => "a JSON array".to_string(),
                _ => text.to_string(),
            }
        )
    };
    match first {
        b'n' => Ok(Bind::Null),
        b't' | b'f' => match col.kind {
            ValueKind::Bytes => Err(expected()),
            _ => Ok(Bind::Int(i64::from(first == b't'))),
        },
        b'"' => {
            let s: Cow<'r, str> = if text.contains('\\') {
                Cow::Owned(
                    serde_json::from_str::<String>(text).map_err(|e| format!("bad string: {e}"))?,
                )
            } else {
                Cow::Borrowed(&text[1..text.len() - 1])
            };
            if col.kind == ValueKind::Number || aff == Affinity::Real {
                match s.as_ref() {
                    "Infinity" => return Ok(Bind::Real(f64::INFINITY)),
                    "-Infinity" => return Ok(Bind::Real(f64::NEG_INFINITY)),
                    "NaN" => {
                        return Err("SQLite cannot store NaN (it would become NULL)".into());
                    }
                    _ => {}
                }
            }
            if col.kind == ValueKind::Bytes || aff == Affinity::Blob {
                if let Some(hex) = s.strip_prefix("\\x") {
                    return match decode_hex(hex) {
                        Some(bytes) => Ok(Bind::Blob(bytes)),
                        None if col.kind == ValueKind::Bytes => Err(format!(
                            "{text} is not a valid \"\\\\x...\" hex string (an even number of \
                             hex digits after \\x)"
                        )),
                        None => Ok(Bind::Text(s)),
                    };
                }
            }
            Ok(Bind::Text(s))
        }
        b'{' | b'[' => match col.kind {
            ValueKind::Integer | ValueKind::Number | ValueKind::Boolean | ValueKind::Bytes => {
                Err(expected())
            }
            _ => Ok(Bind::Text(Cow::Borrowed(text))),
        },
        _ => {
            if col.kind == ValueKind::Bytes {
                return Err(expected());
            }
            let integral = !text.contains(['.', 'e', 'E']);
            match aff {
                Affinity::Text => Ok(Bind::Text(Cow::Borrowed(text))),
                Affinity::Real => parse_f64(text),
                Affinity::Integer | Affinity::Numeric | Affinity::Blob if integral => {
                    text.parse::<i64>().map(Bind::Int).map_err(|_| {
                        format!(
                            "{text} is outside SQLite's integer range \
                             (-9223372036854775808 to 9223372036854775807)"
                        )
                    })
                }
                // A non-integral JSON number is bound as a double parsed here, correctly
                // rounded: SQLite's own text-to-REAL conversion is not always (the property
                // test found -8.577277541297562e119 stored one bit off, so a dump → load →
                // dump changed it). The column's NUMERIC affinity still applies to the double
                // (3.0 becomes the integer 3, as from text).
                Affinity::Numeric => match text.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(Bind::Real(v)),
                    _ => Ok(Bind::Text(Cow::Borrowed(text))),
                },
                Affinity::Integer | Affinity::Blob => parse_f64(text),
            }
        }
    }
}

fn parse_f64(text: &str) -> std::result::Result<Bind<'_>, String> {
    text.parse::<f64>()
        .map(Bind::Real)
        .map_err(|e| format!("bad number {text}: {e}"))
}

fn kind_word(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Integer => "an integer",
        ValueKind::Number => "a number",
        ValueKind::Boolean => "true or false",
        ValueKind::Bytes => "a \"\\\\x...\" hex string",
        _ => "a string",
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let b = hex.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    b.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// A value as an SQL literal, for messages only (statements bind their values).
fn sql_literal(b: &Bind<'_>) -> String {
    match b {
        Bind::Null => "NULL".into(),
        Bind::Int(i) => i.to_string(),
        Bind::Real(f) if f.is_finite() => format!("{f:?}"),
        Bind::Real(f) if *f > 0.0 => "9e999".into(),
        Bind::Real(_) => "-9e999".into(),
        Bind::Text(s) => quote_literal(s),
        Bind::Blob(v) => {
            let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
            format!("X'{hex}'")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statements

/// SQL text with placeholders: `parts[0] ? parts[1] ? ...`, the n-th placeholder taking
/// `binds[slots[n]]`.
#[derive(Debug, Default)]
struct Statement {
    parts: Vec<String>,
    slots: Vec<usize>,
}

impl Statement {
    fn new() -> Self {
        Statement {
            parts: vec![String::new()],
            slots: Vec::new(),
        }
    }
    fn sql(&mut self, s: &str) -> &mut Self {
        self.parts
            .last_mut()
            .expect("parts is never empty")
            .push_str(s);
        self
    }
    fn bind(&mut self, slot: usize) -> &mut Self {
        self.slots.push(slot);
        self.parts.push(String::new());
        self
    }
    /// `?, ?, ...` for every slot.
    fn bind_all(&mut self, n: usize) -> &mut Self {
        for i in 0..n {
            if i > 0 {
                self.sql(", ");
            }
            self.bind(i);
        }
        self
    }
}

/// One execution of a [`Statement`] with a row's values (a diesel query, so diesel prepares
/// it once and caches it by its text).
struct Run<'a, 'r> {
    st: &'a Statement,
    binds: &'a [Bind<'r>],
}

static NULL: Option<i64> = None;

impl QueryFragment<Sqlite> for Run<'_, '_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql(&self.st.parts[0]);
        for (n, &slot) in self.st.slots.iter().enumerate() {
            match &self.binds[slot] {
                Bind::Null => out.push_bind_param::<Nullable<BigInt>, _>(&NULL)?,
                Bind::Int(v) => out.push_bind_param::<BigInt, i64>(v)?,
                Bind::Real(v) => out.push_bind_param::<Double, f64>(v)?,
                Bind::Text(s) => out.push_bind_param::<Text, str>(s.as_ref())?,
                Bind::Blob(v) => out.push_bind_param::<Binary, [u8]>(v.as_slice())?,
            }
            out.push_sql(&self.st.parts[n + 1]);
        }
        Ok(())
    }
}

impl QueryId for Run<'_, '_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

fn run(c: &mut SqliteConnection, st: &Statement, binds: &[Bind<'_>]) -> QueryResult<usize> {
    ExecuteDsl::<SqliteConnection, Sqlite>::execute(Run { st, binds }, c)
}

// A `Run` can also be a query whose one column `j` is read by name (like `sql_query`).
impl diesel::query_builder::Query for Run<'_, '_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::RunQueryDsl<SqliteConnection> for Run<'_, '_> {}

#[derive(diesel::QueryableByName)]
struct Flag {
    #[diesel(sql_type = Text)]
    j: String,
}

/// Whether the statement (`SELECT CASE WHEN ... THEN 'true' ELSE 'false' END AS j`) says true.
fn ask(c: &mut SqliteConnection, st: &Statement, binds: &[Bind<'_>]) -> QueryResult<bool> {
    let rows: Vec<Flag> = diesel::RunQueryDsl::load(Run { st, binds }, c)?;
    Ok(rows.first().is_some_and(|f| f.j == "true"))
}

/// The number the statement (`SELECT CAST(count(*) AS TEXT) AS j ...`) counts.
fn held_rows(c: &mut SqliteConnection, st: &Statement, binds: &[Bind<'_>]) -> QueryResult<u64> {
    let rows: Vec<Flag> = diesel::RunQueryDsl::load(Run { st, binds }, c)?;
    Ok(rows.first().and_then(|f| f.j.parse().ok()).unwrap_or(0))
}

/// The statements for one column set.
struct Batch {
    cols: Vec<usize>,
    /// Insert (insert/replace), insert-if-new (upsert with a key), insert-if-no-identical-row
    /// (upsert without a key).
    first: Statement,
    /// Upsert with a key: update the existing row when it differs. None when every column is
    /// part of the key.
    update: Option<Statement>,
    keyed: bool,
    /// Upsert without a key: how many rows identical to this one the table holds.
    count: Option<Statement>,
}

impl Batch {
    /// `was_empty`: the table had no rows before this load, so rows without a key are all new
    /// (as on PostgreSQL) and go in with a plain INSERT.
    fn new(table: &Table, mode: Mode, cols: Vec<usize>, was_empty: bool) -> Batch {
        let names: Vec<&str> = cols
            .iter()
            .map(|&c| table.columns[c].name.as_str())
            .collect();
        let quoted: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
        let target = format!("{} AS t", table.name.sql());
        let insert_head = if cols.is_empty() {
            format!("INSERT INTO {target} DEFAULT VALUES")
        } else {
            format!("INSERT INTO {target} ({}) VALUES (", quoted.join(", "))
        };
        let values = |st: &mut Statement| {
            st.sql(&insert_head);
            if !cols.is_empty() {
                st.bind_all(cols.len()).sql(")");
            }
        };
        let key: Option<&Vec<String>> = std::iter::once(&table.primary_key)
            .chain(table.unique.iter())
            .find(|k| !k.is_empty() && k.iter().all(|c| names.contains(&c.as_str())));
        let mut first = Statement::new();
        match (mode, key) {
            (Mode::Upsert, Some(key)) => {
                let conflict: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
                let conflict = conflict.join(", ");
                values(&mut first);
                first.sql(&format!(" ON CONFLICT ({conflict}) DO NOTHING"));
                let updatable: Vec<&String> = quoted
                    .iter()
                    .zip(&names)
                    .filter(|(_, n)| !key.iter().any(|k| k == *n))
                    .map(|(q, _)| q)
                    .collect();
                let update = (!updatable.is_empty()).then(|| {
                    let set: Vec<String> = updatable
                        .iter()
                        .map(|q| format!("{q} = excluded.{q}"))
                        .collect();
                    let differs: Vec<String> = updatable
                        .iter()
                        .map(|q| format!("t.{q} IS NOT excluded.{q} COLLATE BINARY"))
                        .collect();
                    let mut st = Statement::new();
                    values(&mut st);
                    st.sql(&format!(
                        " ON CONFLICT ({conflict}) DO UPDATE SET {} WHERE {}",
                        set.join(", "),
                        differs.join(" OR ")
                    ));
                    st
                });
                Batch {
                    cols,
                    first,
                    update,
                    keyed: true,
                    count: None,
                }
            }
            (Mode::Upsert, None) if !cols.is_empty() && !was_empty => {
                // No key to match on: rows are counted, not matched. The n-th copy of a row in
                // the batch goes in unless the table held n identical rows before the batch, so
                // a fixture's duplicates all load and a re-run adds nothing, as on PostgreSQL.
                // The table is counted once per distinct row, not once per row.
                values(&mut first);
                let mut count = Statement::new();
                count.sql(&format!(
                    "SELECT CAST(count(*) AS TEXT) AS j FROM {} AS x WHERE ",
                    table.name.sql()
                ));
                for (i, q) in quoted.iter().enumerate() {
                    if i > 0 {
                        count.sql(" AND ");
                    }
                    count
                        .sql(&format!("x.{q} IS "))
                        .bind(i)
                        .sql(" COLLATE BINARY");
                }
                Batch {
                    cols,
                    first,
                    update: None,
                    keyed: false,
                    count: Some(count),
                }
            }
            _ => {
                values(&mut first);
                Batch {
                    cols,
                    first,
                    update: None,
                    keyed: false,
                    count: None,
                }
            }
        }
    }
}

pub(super) fn load_rows(
    conn: &mut Connection,
    plan: &TablePlan<'_>,
    stream: &mut RowStream<'_>,
    progress: &dyn Progress,
    _fixups: &mut Vec<Fixup>,
    _table_index: usize,
) -> Result<TableCounts> {
    // plan.null_columns is always empty: SQLite foreign keys are deferred, never broken.
    let table = plan.table;
    let affinities: Vec<Affinity> = table
        .columns
        .iter()
        .map(|c| affinity(&c.type_name))
        .collect();
    let mut counts = TableCounts::default();
    let mut batch: Option<Batch> = None;
    // Upsert without a key: how many copies of each row this batch has given so far.
    // (identical rows the table held before the batch, copies of the row seen in the batch).
    let mut copies: std::collections::HashMap<String, (u64, u64)> = Default::default();
    let mut since_report = 0u64;
    while stream.advance()? {
        let fields = resolve(stream, table)?;
        let row = stream.current();
        let same = batch.as_ref().is_some_and(|b| {
            b.cols.len() == fields.len() && b.cols.iter().zip(&fields).all(|(a, (b, _))| a == b)
        });
        if !same {
            batch = Some(Batch::new(
                table,
                plan.mode,
                fields.iter().map(|(i, _)| *i).collect(),
                plan.was_empty,
            ));
            // Copies are counted per batch, as PostgreSQL numbers them per staged batch.
            copies.clear();
        }
        let b = batch.as_ref().expect("set above");
        let mut binds: Vec<Bind<'_>> = Vec::with_capacity(fields.len());
        for (ci, raw) in &fields {
            let col = &table.columns[*ci];
            binds.push(
                bind_value(col, affinities[*ci], raw)
                    .map_err(|m| stream.error(table, row, Some(&col.name), m))?,
            );
        }
        let fail = |conn: &mut Connection, e: diesel::result::Error| {
            let (column, message) = explain(conn, table, &b.cols, &binds, describe_diesel(&e));
            stream.error(table, row, column.as_deref(), message)
        };
        if let Some(count) = &b.count {
            let key = format!("{binds:?}");
            let (held, seen) = match copies.get_mut(&key) {
                Some(c) => c,
                None => {
                    let held = match held_rows(sqlite(conn)?, count, &binds) {
                        Ok(n) => n,
                        Err(e) => return Err(fail(conn, e)),
                    };
                    copies.entry(key).or_insert((held, 0))
                }
            };
            *seen += 1;
            if *seen <= *held {
                counts.rows += 1;
                counts.unchanged += 1;
                since_report += 1;
                continue;
            }
        }
        let n = match run(sqlite(conn)?, &b.first, &binds) {
            Ok(n) => n,
            Err(e) => return Err(fail(conn, e)),
        };
        counts.rows += 1;
        if n > 0 {
            counts.inserted += 1;
        } else if !b.keyed {
            counts.unchanged += 1;
        } else {
            let n = match &b.update {
                Some(st) => match run(sqlite(conn)?, st, &binds) {
                    Ok(n) => n,
                    Err(e) => return Err(fail(conn, e)),
                },
                None => 0,
            };
            if n > 0 {
                counts.updated += 1;
            } else {
                counts.unchanged += 1;
            }
        }
        since_report += 1;
        if since_report >= 4096 {
            progress.rows(since_report);
            since_report = 0;
        }
    }
    progress.rows(since_report);
    Ok(counts)
}

/// Which column an SQLite error is about, and a better message where SQLite's is terse:
/// "NOT NULL constraint failed: t.c", "UNIQUE constraint failed: t.a, t.b", "cannot store TEXT
/// value in INTEGER column t.c" name the column; "FOREIGN KEY constraint failed" names nothing,
/// so the row's foreign keys are looked up to find the one without a parent row.
fn explain(
    conn: &mut Connection,
    table: &Table,
    cols: &[usize],
    binds: &[Bind<'_>],
    message: String,
) -> (Option<String>, String) {
    if message.contains("FOREIGN KEY constraint failed") {
        if let Some((col, m)) = missing_parent(conn, table, cols, binds) {
            return (Some(col), m);
        }
        return (
            None,
            format!(
                "{message} (a row of another table still references the values this row \
                 replaces)"
            ),
        );
    }
    let prefix = format!("{}.", table.name.name);
    let column = message
        .rsplit_once(": ")
        .map(|(_, rest)| rest)
        .or_else(|| message.rsplit_once(" column ").map(|(_, rest)| rest))
        .and_then(|rest| rest.split(", ").next())
        .and_then(|first| first.strip_prefix(&prefix))
        .filter(|name| table.column(name).is_some())
        .map(str::to_owned);
    (column, message)
}

#[derive(Deserialize)]
struct FkPart {
    id: i64,
    seq: i64,
    table: String,
    from: String,
    to: Option<String>,
}

/// The first foreign key of the row whose parent row does not exist: (its columns, message).
fn missing_parent(
    conn: &mut Connection,
    table: &Table,
    cols: &[usize],
    binds: &[Bind<'_>],
) -> Option<(String, String)> {
    let mut parts: Vec<FkPart> = conn
        .query_json(&format!(
            "SELECT json_group_array(json_object('id', id, 'seq', seq, 'table', \"table\", \
             'from', \"from\", 'to', \"to\")) AS j FROM pragma_foreign_key_list({}, 'main')",
            quote_literal(&table.name.name)
        ))
        .ok()?;
    parts.sort_by_key(|p| (p.id, p.seq));
    let mut ids: Vec<i64> = parts.iter().map(|p| p.id).collect();
    ids.dedup();
    for id in ids {
        let fk: Vec<&FkPart> = parts.iter().filter(|p| p.id == id).collect();
        let parent = &fk[0].table;
        let mut to: Vec<String> = fk.iter().filter_map(|p| p.to.clone()).collect();
        if to.len() != fk.len() {
            to = conn
                .query_json(&format!(
                    "SELECT json_group_array(name) AS j FROM (SELECT name FROM \
                     pragma_table_info({}, 'main') WHERE pk > 0 ORDER BY pk)",
                    quote_literal(parent)
                ))
                .ok()?;
        }
        // The row's values for the key's columns (positions into `binds`) and, for the message,
        // their rendering.
        let mut slots = Vec::new();
        let mut values = Vec::new();
        for p in &fk {
            let pos = cols
                .iter()
                .position(|&ci| table.columns[ci].name.eq_ignore_ascii_case(&p.from));
            match pos.map(|i| (i, &binds[i])) {
                Some((_, Bind::Null)) | None => break,
                Some((i, b)) => {
                    slots.push(i);
                    values.push(sql_literal(b));
                }
            }
        }
        if slots.len() != fk.len() || to.len() != fk.len() {
            continue;
        }
        // Values are bound, never spliced into the SQL.
        let mut st = Statement::new();
        st.sql(&format!(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM main.{} WHERE ",
            quote_ident(parent)
        ));
        for (n, (t, &slot)) in to.iter().zip(&slots).enumerate() {
            if n > 0 {
                st.sql(" AND ");
            }
            st.sql(&format!("{} = ", quote_ident(t))).bind(slot);
        }
        st.sql(") THEN 'true' ELSE 'false' END AS j");
        let exists = ask(sqlite(conn).ok()?, &st, binds).ok()?;
        if !exists {
            let from: Vec<String> = fk.iter().map(|p| p.from.clone()).collect();
            return Some((
                from.join(", "),
                format!(
                    "foreign key violated: {} has no matching row in {parent} ({})",
                    render_key(&from, &values),
                    to.join(", ")
                ),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ty: &str, kind: ValueKind) -> Column {
        Column {
            name: "c".into(),
            type_name: ty.into(),
            kind,
            base_type: None,
            nullable: true,
            default: None,
            generated: false,
            identity: None,
        }
    }

    fn bind(ty: &str, json: &str) -> std::result::Result<Bind<'static>, String> {
        let raw: &'static RawValue =
            Box::leak(serde_json::from_str::<Box<RawValue>>(json).unwrap());
        let kind = crate::catalog::sqlite::value_kind(ty);
        bind_value(&col(ty, kind), affinity(ty), raw).map(|b| match b {
            Bind::Text(s) => Bind::Text(Cow::Owned(s.into_owned())),
            other => other,
        })
    }

    fn text(s: &str) -> Bind<'static> {
        Bind::Text(Cow::Owned(s.into()))
    }

    #[test]
    fn affinity_rules() {
        for (ty, a) in [
            ("INTEGER", Affinity::Integer),
            ("BIGINT", Affinity::Integer),
            ("VARCHAR(3)", Affinity::Text),
            ("TEXT", Affinity::Text),
            ("", Affinity::Blob),
            ("BLOB", Affinity::Blob),
            ("REAL", Affinity::Real),
            ("DOUBLE PRECISION", Affinity::Real),
            ("NUMERIC(10,2)", Affinity::Numeric),
            ("BOOLEAN", Affinity::Numeric),
            ("DATETIME", Affinity::Numeric),
            ("JSON", Affinity::Numeric),
        ] {
            assert_eq!(affinity(ty), a, "{ty}");
        }
    }

    #[test]
    fn numbers_follow_affinity() {
        assert_eq!(
            bind("INTEGER", "9007199254740993"),
            Ok(Bind::Int(9007199254740993))
        );
        assert_eq!(
            bind("INTEGER", "-9223372036854775808"),
            Ok(Bind::Int(i64::MIN))
        );
        assert!(bind("INTEGER", "9223372036854775808")
            .unwrap_err()
            .contains("outside SQLite's integer range"));
        assert_eq!(bind("INTEGER", "1.5"), Ok(Bind::Real(1.5)));
        assert_eq!(bind("TEXT", "12.50"), Ok(text("12.50")));
        assert_eq!(bind("TEXT", "1e400"), Ok(text("1e400")));
        assert_eq!(bind("REAL", "0.1"), Ok(Bind::Real(0.1)));
        assert_eq!(bind("REAL", "1e400"), Ok(Bind::Real(f64::INFINITY)));
        assert_eq!(bind("NUMERIC(10,2)", "12.50"), Ok(Bind::Real(12.5)));
        // Parsed here, correctly rounded (SQLite's text conversion stores this one bit off).
        assert_eq!(
            bind("NUMERIC", "-8.577277541297562e119"),
            Ok(Bind::Real(-8.577277541297562e119))
        );
        assert_eq!(bind("NUMERIC", "1e400"), Ok(text("1e400")));
        assert_eq!(bind("NUMERIC", "12"), Ok(Bind::Int(12)));
        assert_eq!(bind("", "7"), Ok(Bind::Int(7)));
        assert_eq!(bind("", "7.25"), Ok(Bind::Real(7.25)));
        assert!(bind("BLOB", "7").is_err());
        assert_eq!(
            bind("REAL", r#""-Infinity""#),
            Ok(Bind::Real(f64::NEG_INFINITY))
        );
        assert_eq!(
            bind("DECIMAL(5)", r#""Infinity""#),
            Ok(Bind::Real(f64::INFINITY))
        );
        assert!(bind("FLOAT", r#""NaN""#).unwrap_err().contains("NaN"));
        assert_eq!(bind("TEXT", r#""Infinity""#), Ok(text("Infinity")));
    }

    #[test]
    fn strings_blobs_json_booleans() {
        assert_eq!(bind("TEXT", r#""a\"b\n""#), Ok(text("a\"b\n")));
        assert_eq!(
            bind("BLOB", r#""\\x00ff0A""#),
            Ok(Bind::Blob(vec![0, 255, 10]))
        );
        assert_eq!(bind("", r#""\\x41""#), Ok(Bind::Blob(vec![0x41])));
        assert_eq!(bind("", r#""\\xZZ""#), Ok(text("\\xZZ")));
        assert_eq!(bind("TEXT", r#""\\x41""#), Ok(text("\\x41")));
        assert!(bind("BLOB", r#""\\x4""#).unwrap_err().contains("hex"));
        assert_eq!(bind("BLOB", r#""plain""#), Ok(text("plain")));
        assert_eq!(bind("BOOLEAN", "true"), Ok(Bind::Int(1)));
        assert_eq!(bind("INTEGER", "false"), Ok(Bind::Int(0)));
        assert_eq!(bind("TEXT", "null"), Ok(Bind::Null));
        assert_eq!(
            bind("TEXT", r#"{"a": [1, 2]}"#),
            Ok(text(r#"{"a": [1, 2]}"#))
        );
        assert_eq!(bind("", "[1,2]"), Ok(text("[1,2]")));
        assert!(bind("INTEGER", "{}").unwrap_err().contains("JSON object"));
        assert!(bind("REAL", "[1]").unwrap_err().contains("JSON array"));
        assert_eq!(bind("JSON", r#"{"$json": null}"#), Ok(text("null")));
        assert_eq!(bind("JSON", "null"), Ok(Bind::Null));
        assert_eq!(bind("JSON", r#""s""#), Ok(text(r#""s""#)));
        assert_eq!(bind("JSONB", "12"), Ok(text("12")));
    }

    #[test]
    fn hex() {
        assert_eq!(decode_hex(""), Some(vec![]));
        assert_eq!(decode_hex("0aFf"), Some(vec![10, 255]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("0g"), None);
        assert_eq!(sql_literal(&Bind::Blob(vec![1, 171])), "X'01ab'");
        assert_eq!(sql_literal(&text("it's")), "'it''s'");
    }
}
