//! `subset`: which rows of which tables a subset dump (`dump --where`) writes — the seeds, every
//! row they need (parents) and every row that hangs off them (children) — found by following
//! foreign keys in rounds, inside the dump's snapshot.
//!
//! Rules (the contract of `dump --where`):
//! - Seeds: the rows of each `--where` table matching its condition.
//! - Parents: every included row's non-NULL foreign keys pull in the rows they reference,
//!   transitively. Composite keys follow MATCH SIMPLE: a key with a NULL column references
//!   nothing. Keys referencing a unique non-primary-key column work like any other.
//! - Children: rows referencing a seed row, or a row itself included as a child, are included
//!   (with their parents). Rows included only as parents do not pull in their children.
//!   `no_children`: seeds and parents only.
//! - `--full` tables are included whole; their rows pull parents, never children.
//!
//! Invariants:
//! - Only key sets live on the client (one identity per included row, never a whole row):
//!   the primary key, or where there is none a row identity that is stable inside one snapshot
//!   (`tableoid, ctid` on PostgreSQL, `rowid` on SQLite). See `pg.rs` / `sqlite.rs`.
//! - Every query is a semi-join from a batch of known keys to the rows related through one
//!   foreign key, with the keys bound as parameters (never one query per row, never a value in
//!   SQL text), so the work is one round trip per (foreign key, batch, round) whatever the
//!   depth of a chain, and a SELECT-only role is enough (no temporary tables).
//! - The user's conditions run inside the read-only snapshot (SQLite: with `query_only` on),
//!   so they can select but never write.
//! - The closure stops as soon as it grows past `max_rows`, before anything is written.

pub(crate) mod pg;
pub(crate) mod sqlite;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::backend::Connection;
use crate::catalog::{quote_ident, split_name, Catalog, Table};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// The default `max_rows` guard: large enough for any fixture a person commits, small enough to
/// stop a closure that runs through a hub table into the whole database.
pub const DEFAULT_MAX_ROWS: u64 = 1_000_000;

/// How many keys go into one query.
const BATCH: usize = 50_000;

/// One row's identity, in the backend's own encoding (see `pg.rs` / `sqlite.rs`); opaque here.
pub type Key = Box<str>;

/// A `--where 'TABLE: CONDITION'` seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// A fixture key (`table` or `schema.table`, quoted parts allowed).
    pub table: String,
    /// An SQL boolean expression on the table's columns.
    pub condition: String,
}

impl Seed {
    /// Parses `TABLE: CONDITION`: the table name ends at the first `:` outside double quotes.
    pub fn parse(text: &str) -> Result<Seed> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "--where {text:?}: {why} (expected 'TABLE: CONDITION', e.g. 'users: id = 42')"
            ))
        };
        let mut quoted = false;
        let colon = text
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c == ':' && !quoted
            })
            .map(|(i, _)| i)
            .ok_or_else(|| bad("no ':' after the table name"))?;
        let table = text[..colon].trim();
        let condition = text[colon + 1..].trim();
        if table.is_empty() {
            return Err(bad("no table name"));
        }
        split_name(table).map_err(|m| bad(&format!("table name: {m}")))?;
        if condition.is_empty() {
            return Err(bad("no condition"));
        }
        if ends_statement(condition) {
            // One expression, never a second statement (which SQLite would silently ignore).
            return Err(bad(
                "a condition is one SQL expression; ';' ends a statement",
            ));
        }
        Ok(Seed {
            table: table.to_string(),
            condition: condition.to_string(),
        })
    }
}

/// Whether SQL text has a `;` outside string literals, quoted identifiers and comments.
fn ends_statement(sql: &str) -> bool {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b';' => return true,
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// What a subset dump includes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubsetOptions {
    /// The seeds (at least one: that is what makes a dump a subset).
    pub seeds: Vec<Seed>,
    /// Seeds and their parents only.
    pub no_children: bool,
    /// Table patterns (`*`, `?`) included whole.
    pub full: Vec<String>,
    /// Refuse a subset of more rows than this (None: no limit).
    pub max_rows: Option<u64>,
}

/// How rows of a table came into the subset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Seed,
    Full,
    /// Referenced by rows of `of` through the foreign key `via` (of `of`).
    ParentOf {
        of: String,
        via: String,
    },
    /// References rows of `of` through the foreign key `via` (of this table).
    ChildOf {
        of: String,
        via: String,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Seed => f.write_str("seed"),
            Reason::Full => f.write_str("full"),
            Reason::ParentOf { of, via } => write!(f, "parent of {of} via {via}"),
            Reason::ChildOf { of, via } => write!(f, "child of {of} via {via}"),
        }
    }
}

/// One table of a subset: its rows and how they were reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePlan {
    pub table: String,
    pub rows: u64,
    /// Each way rows were first reached, with how many rows it brought, in closure order.
    pub reached: Vec<(Reason, u64)>,
}

/// The outcome of the closure, for `--plan` and the summary.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Tables with at least one row, in dump order.
    pub tables: Vec<TablePlan>,
    /// Rounds of the closure.
    pub rounds: usize,
}

impl Plan {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// The rows of one table a subset dump writes.
#[derive(Debug, Clone)]
pub enum RowFilter {
    /// The whole table (`--full`).
    All,
    /// The rows with these identities (in no particular order: the dump orders).
    Keys(Vec<Key>),
}

/// A computed subset: the plan and, per catalog table index, its rows.
#[derive(Debug)]
pub struct Subset {
    pub plan: Plan,
    pub rows: HashMap<usize, RowFilter>,
}

/// Per-table state of the closure.
#[derive(Default)]
struct State {
    full: bool,
    full_rows: u64,
    /// Included rows; `true` when the row pulls in children (seed or child).
    rows: HashMap<Key, bool>,
    /// Rows whose parents are still to be followed (all rows, for a full table: `full_pending`),
    /// each with the foreign key (index in the catalog) it was reached through as a child: its
    /// parent through that key is already in, so that key is not followed back.
    parent_frontier: Vec<(Key, Option<usize>)>,
    full_pending: bool,
    /// Rows whose children are still to be followed.
    child_frontier: Vec<Key>,
    reached: Vec<(Reason, u64)>,
}

impl State {
    fn count(&self) -> u64 {
        if self.full {
            self.full_rows
        } else {
            self.rows.len() as u64
        }
    }

    /// Adds rows reached through `reason`; `children`: they pull in their children. `via`: the
    /// foreign key through which they were found as children.
    fn add(&mut self, keys: Vec<Key>, reason: Reason, children: bool, via: Option<usize>) {
        if self.full {
            return;
        }
        let mut new = 0;
        for k in keys {
            match self.rows.get_mut(&k) {
                None => {
                    new += 1;
                    self.rows.insert(k.clone(), children);
                    if children {
                        self.child_frontier.push(k.clone());
                    }
                    self.parent_frontier.push((k, via));
                }
                Some(pulls) if children && !*pulls => {
                    *pulls = true;
                    self.child_frontier.push(k);
                }
                Some(_) => {}
            }
        }
        if new > 0 {
            match self.reached.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, n)) => *n += new,
                None => self.reached.push((reason, new)),
            }
        }
    }
}

/// Computes the subset of the `selected` tables (catalog indices, in dump order) that `opts`
/// describes. Must run inside the dump's snapshot transaction.
pub fn closure(
    conn: &mut Connection,
    catalog: &Catalog,
    selected: &[usize],
    opts: &SubsetOptions,
    progress: &dyn Progress,
) -> Result<Subset> {
    if opts.seeds.is_empty() {
        return Err(Error::Invalid(
            "a subset needs at least one --where 'TABLE: CONDITION'".into(),
        ));
    }
    // SQLite has no read-only transaction: make the connection refuse writes while user
    // conditions run.
    let sqlite = matches!(conn, Connection::Sqlite(_));
    if sqlite {
        conn.execute("PRAGMA query_only = ON")?;
    } else {
        // Keys travel as text and are parsed back: fix the text forms first, as the dump does.
        conn.execute(crate::dump::pg::STABLE_OUTPUT)?;
    }
    let result = run_closure(conn, catalog, selected, opts, progress);
    if sqlite {
        conn.execute("PRAGMA query_only = OFF")?;
    }
    result
}

fn run_closure(
    conn: &mut Connection,
    catalog: &Catalog,
    selected: &[usize],
    opts: &SubsetOptions,
    progress: &dyn Progress,
) -> Result<Subset> {
    let in_dump: HashSet<usize> = selected.iter().copied().collect();
    let mut states: BTreeMap<usize, State> = BTreeMap::new();
    let key_of = |t: usize| catalog.tables[t].key.clone();

    for pattern in &opts.full {
        for t in catalog.select(std::slice::from_ref(pattern), &[], &[])? {
            if !in_dump.contains(&t) {
                continue;
            }
            let st = states.entry(t).or_default();
            if !st.full {
                st.full = true;
                st.full_pending = true;
                st.full_rows = count_rows(conn, &catalog.tables[t])?;
                st.reached.push((Reason::Full, st.full_rows));
            }
        }
    }
    for seed in &opts.seeds {
        let t = catalog.find(&seed.table)?;
        if !in_dump.contains(&t) {
            return Err(Error::Invalid(format!(
                "--where table {} is left out of the dump by --table / --exclude-table / --schema",
                catalog.tables[t].key
            )));
        }
        let keys = seed_keys(conn, &catalog.tables[t], &seed.condition).map_err(|e| {
            Error::Invalid(format!(
                "--where '{}: {}': {e}",
                catalog.tables[t].key, seed.condition
            ))
        })?;
        states
            .entry(t)
            .or_default()
            .add(keys, Reason::Seed, !opts.no_children, None);
    }

    let mut rounds = 0;
    loop {
        // This round's work: every frontier as it stands; what it finds is the next round's.
        type Work = (usize, Vec<(Key, Option<usize>)>, bool, Vec<Key>);
        let work: Vec<Work> = states
            .iter_mut()
            .filter(|(_, s)| {
                !s.parent_frontier.is_empty() || s.full_pending || !s.child_frontier.is_empty()
            })
            .map(|(&t, s)| {
                let full = std::mem::take(&mut s.full_pending);
                (
                    t,
                    std::mem::take(&mut s.parent_frontier),
                    full,
                    std::mem::take(&mut s.child_frontier),
                )
            })
            .collect();
        if work.is_empty() {
            break;
        }
        rounds += 1;
        for (t, parents_of, full, children_of) in work {
            let table = &catalog.tables[t];
            for (fi, fk) in catalog.foreign_keys.iter().enumerate() {
                if fk.table != table.name {
                    continue;
                }
                let Some(p) = catalog.table_index(&fk.ref_table) else {
                    continue;
                };
                if states.get(&p).is_some_and(|s| s.full) {
                    continue;
                }
                let parent = &catalog.tables[p];
                let src: Option<Vec<Key>> = (!full).then(|| {
                    parents_of
                        .iter()
                        .filter(|(_, via)| *via != Some(fi))
                        .map(|(k, _)| k.clone())
                        .collect()
                });
                if src.as_ref().is_some_and(|k| k.is_empty()) {
                    continue;
                }
                let keys = related(
                    conn,
                    table,
                    &fk.columns,
                    src.as_deref(),
                    parent,
                    &fk.ref_columns,
                )?;
                if keys.is_empty() {
                    continue;
                }
                if !in_dump.contains(&p) {
                    return Err(Error::Invalid(format!(
                        "table {} is left out of the dump (--table / --exclude-table / --schema), \
                         but {} included rows of {} reference it through foreign key {} ({}): \
                         include {} or leave those rows out",
                        parent.key,
                        keys.len(),
                        table.key,
                        fk.name,
                        fk.columns.join(", "),
                        parent.key
                    )));
                }
                let reason = Reason::ParentOf {
                    of: table.key.clone(),
                    via: fk.name.clone(),
                };
                states.entry(p).or_default().add(keys, reason, false, None);
            }
            if opts.no_children || children_of.is_empty() {
                continue;
            }
            for (fi, fk) in catalog.foreign_keys.iter().enumerate() {
                if fk.ref_table != table.name {
                    continue;
                }
                let Some(c) = catalog.table_index(&fk.table) else {
                    continue;
                };
                if !in_dump.contains(&c) || states.get(&c).is_some_and(|s| s.full) {
                    continue;
                }
                let child = &catalog.tables[c];
                let keys = related(
                    conn,
                    table,
                    &fk.ref_columns,
                    Some(&children_of),
                    child,
                    &fk.columns,
                )?;
                let reason = Reason::ChildOf {
                    of: table.key.clone(),
                    via: fk.name.clone(),
                };
                states
                    .entry(c)
                    .or_default()
                    .add(keys, reason, true, Some(fi));
            }
        }
        let total: u64 = states.values().map(State::count).sum();
        progress.message(&format!(
            "subset round {rounds}: {total} rows in {} tables so far",
            states.values().filter(|s| s.count() > 0).count()
        ));
        if let Some(max) = opts.max_rows.filter(|&m| total > m) {
            return Err(too_many(&states, &key_of, max, total, rounds));
        }
    }

    let mut plan = Plan {
        tables: Vec::new(),
        rounds,
    };
    let mut rows = HashMap::new();
    for &t in selected {
        let Some(st) = states.remove(&t) else {
            continue;
        };
        let n = st.count();
        if n == 0 {
            continue;
        }
        plan.tables.push(TablePlan {
            table: key_of(t),
            rows: n,
            reached: st.reached,
        });
        let filter = if st.full {
            RowFilter::All
        } else {
            RowFilter::Keys(st.rows.into_keys().collect())
        };
        rows.insert(t, filter);
    }
    Ok(Subset { plan, rows })
}

/// The `max_rows` error: the tables that grew most and how they were reached.
fn too_many(
    states: &BTreeMap<usize, State>,
    key_of: &dyn Fn(usize) -> String,
    max: u64,
    total: u64,
    rounds: usize,
) -> Error {
    let mut by_size: Vec<(&usize, &State)> = states.iter().collect();
    by_size.sort_by(|a, b| b.1.count().cmp(&a.1.count()).then(a.0.cmp(b.0)));
    let grew: Vec<String> = by_size
        .iter()
        .take(5)
        .map(|(&t, s)| {
            let how: Vec<String> = s.reached.iter().map(|(r, n)| format!("{n} {r}")).collect();
            let rows = if s.count() == 1 { "row" } else { "rows" };
            format!("{} {} {rows} ({})", key_of(t), s.count(), how.join(", "))
        })
        .collect();
    Error::SubsetTooLarge {
        max,
        total,
        rounds,
        grew: grew.join("; "),
    }
}

fn count_rows(conn: &mut Connection, table: &Table) -> Result<u64> {
    let sql = match conn {
        Connection::Pg(_) => pg::count_sql(table),
        Connection::Sqlite(_) => sqlite::count_sql(table),
    };
    conn.query_json(&sql)
}

fn seed_keys(conn: &mut Connection, table: &Table, condition: &str) -> Result<Vec<Key>> {
    match conn {
        Connection::Pg(c) => pg::seed_keys(c, table, condition),
        Connection::Sqlite(c) => sqlite::seed_keys(c, table, condition),
    }
}

/// The one shape of every closure query, on both backends: the keys (`key`, an expression on
/// alias `d`) of the `dst` rows whose columns equal those of the `src` rows passing `filter`
/// (a `WHERE` on alias `s`, or empty). `IN` on row values gives MATCH SIMPLE: a NULL column
/// matches nothing.
fn related_sql(
    key: &str,
    (dst, dst_cols): (&str, &[String]),
    (src, src_cols): (&str, &[String]),
    filter: &str,
) -> String {
    let cols = |alias: &str, names: &[String]| {
        let v: Vec<String> = names
            .iter()
            .map(|n| format!("{alias}.{}", quote_ident(n)))
            .collect();
        v.join(", ")
    };
    format!(
        "SELECT {key} AS k FROM {dst} AS d WHERE ({}) IN (SELECT {} FROM {src} AS s{filter})",
        cols("d", dst_cols),
        cols("s", src_cols)
    )
}

/// Identities of the rows of `dst` whose `dst_cols` equal the `src_cols` of the `src` rows with
/// identities `src_keys` (every `src` row when None), in batches.
fn related(
    conn: &mut Connection,
    src: &Table,
    src_cols: &[String],
    src_keys: Option<&[Key]>,
    dst: &Table,
    dst_cols: &[String],
) -> Result<Vec<Key>> {
    let mut one = |keys: Option<&[Key]>| match conn {
        Connection::Pg(c) => pg::related(c, src, src_cols, keys, dst, dst_cols),
        Connection::Sqlite(c) => sqlite::related(c, src, src_cols, keys, dst, dst_cols),
    };
    match src_keys {
        None => one(None),
        Some(keys) => {
            let mut out = Vec::new();
            for batch in keys.chunks(BATCH) {
                out.extend(one(Some(batch))?);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_split_at_the_first_colon_outside_quotes() {
        let s = Seed::parse("clients_client: id % 10 = 0").unwrap();
        assert_eq!(s.table, "clients_client");
        assert_eq!(s.condition, "id % 10 = 0");
        let s = Seed::parse("sales.orders:created_at::date = '2024-01-01'").unwrap();
        assert_eq!(s.table, "sales.orders");
        assert_eq!(s.condition, "created_at::date = '2024-01-01'");
        let s = Seed::parse(r#""we:ird"."t:x": "a:b" = 1"#).unwrap();
        assert_eq!(s.table, r#""we:ird"."t:x""#);
        assert_eq!(s.condition, r#""a:b" = 1"#);
        for ok in [
            "users: name = ';'",
            "users: \"a;b\" = 1 -- ;\n",
            "users: /* ; */ true",
        ] {
            assert!(Seed::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "users",
            ": id = 1",
            "users:  ",
            "\"open: x",
            "users: id = 1); DELETE FROM users; SELECT (1",
            "users: true;",
        ] {
            let e = Seed::parse(bad).unwrap_err().to_string();
            assert!(e.contains("TABLE: CONDITION"), "{bad}: {e}");
        }
    }

    #[test]
    fn state_counts_new_rows_per_reason_and_upgrades_parents_to_children() {
        let mut st = State::default();
        let k = |s: &str| -> Key { s.into() };
        st.add(vec![k("1"), k("2")], Reason::Seed, true, None);
        st.add(
            vec![k("2"), k("3")],
            Reason::ParentOf {
                of: "a".into(),
                via: "f".into(),
            },
            false,
            None,
        );
        assert_eq!(st.count(), 3);
        assert_eq!(st.reached[0], (Reason::Seed, 2));
        assert_eq!(st.reached[1].1, 1);
        assert_eq!(st.parent_frontier.len(), 3);
        assert_eq!(st.child_frontier.len(), 2);
        // A parent-only row reached again as a child now pulls in its children, once.
        st.add(vec![k("3")], Reason::Seed, true, None);
        st.add(vec![k("3")], Reason::Seed, true, None);
        assert_eq!(st.child_frontier.len(), 3);
        assert_eq!(st.parent_frontier.len(), 3);
    }
}
