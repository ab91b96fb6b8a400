//! Sequence realignment: put every sequence that feeds a column just past the values stored in
//! the columns it feeds, so the next generated ID cannot collide with an existing row.
//!
//! Rules (the same for `reset-sequences`, `sequences`, `--check` and the end of `load`):
//! - The target next value of an ascending sequence is MAX(every column it feeds) + INCREMENT,
//!   of a descending one MIN + INCREMENT; with no rows anywhere it is the sequence's START. The
//!   target is kept inside MINVALUE..MAXVALUE; a target beyond the far bound is an error (the
//!   sequence is exhausted), never a silent wrap.
//! - A sequence shared by several columns takes the extreme across all of them, and every table
//!   it feeds is locked while reading, even when only one of them was asked for.
//! - `never_rewind` keeps a sequence that is already past its target where it is.
//! - Realigning runs inside the caller's transaction after locking the tables against concurrent
//!   writers (SHARE ROW EXCLUSIVE: reads go on, inserts wait), so nobody can insert between
//!   reading MAX and moving the sequence. Sequence moves are not undone by ROLLBACK in
//!   PostgreSQL, so they are always the last statements before COMMIT.
//!
//! It works from the catalog's table names and sequences only (never a table's columns: each
//! feed carries its column's kind), so `inspect` and `reset` read the narrower
//! [`Catalog::read_for_sequences`], while `load` passes its full catalog.

mod pg;
mod sqlite;

use serde::Serialize;

use crate::backend::{Backend, Connection, DatabaseUrl, TxMode};
use crate::catalog::{quote_literal, Catalog, QualifiedName, Sequence, ValueKind};
use crate::error::{Error, Result};

/// How a sequence's next value relates to the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Next value is exactly the target.
    Ok,
    /// Next value is not past the stored values: the next insert may collide.
    Behind,
    /// Next value is safe but not the exact target (IDs were used and deleted, or it was set by
    /// hand).
    Ahead,
    /// `nextval` fails now (the sequence reached MAXVALUE/MINVALUE), or no next value past the
    /// data fits within MINVALUE..MAXVALUE.
    Exhausted,
    /// A column it feeds is not numeric (e.g. `'INV-' || nextval(...)`), so collisions cannot be
    /// checked; realignment only ever moves it forward.
    Unchecked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Behind => "behind",
            Status::Ahead => "ahead",
            Status::Exhausted => "exhausted",
            Status::Unchecked => "unchecked",
        }
    }
}

/// One sequence and where it stands against its columns.
#[derive(Debug, Clone, Serialize)]
pub struct SequenceState {
    /// Display name: fixture-style key of the sequence (`users_id_seq` or `sales.orders_id_seq`).
    pub sequence: String,
    #[serde(skip)]
    pub name: QualifiedName,
    /// `table.column` for each column it feeds.
    pub feeds: Vec<String>,
    /// The value `nextval` returned last, or None when it has never been called.
    #[serde(serialize_with = "ser_opt")]
    pub last_value: Option<i128>,
    /// What `nextval` will return next.
    #[serde(serialize_with = "ser")]
    pub next_value: i128,
    /// MAX (ascending) or MIN (descending) of the fed columns; None when they hold no rows.
    #[serde(serialize_with = "ser_opt")]
    pub column_extreme: Option<i128>,
    /// The realigned next value, or None when the sequence is exhausted.
    #[serde(serialize_with = "ser_opt")]
    pub target: Option<i128>,
    #[serde(serialize_with = "ser")]
    pub increment: i128,
    pub status: Status,
    /// Fed columns whose type is not numeric: they cannot be compared and are left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_columns: Vec<String>,
}

fn ser<S: serde::Serializer>(v: &i128, s: S) -> std::result::Result<S::Ok, S::Error> {
    // i64 covers every PostgreSQL sequence value; fall back to a string for computed overflows.
    match i64::try_from(*v) {
        Ok(n) => s.serialize_i64(n),
        Err(_) => s.serialize_str(&v.to_string()),
    }
}

fn ser_opt<S: serde::Serializer>(v: &Option<i128>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(v) => ser(v, s),
        None => s.serialize_none(),
    }
}

/// A move that realignment made (or would make).
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub sequence: String,
    #[serde(serialize_with = "ser")]
    pub from: i128,
    #[serde(serialize_with = "ser")]
    pub to: i128,
}

#[derive(Debug, Clone, Default)]
pub struct ResetOptions {
    /// Only sequences feeding these tables (user syntax: `table` or `schema.table`); empty = all.
    pub tables: Vec<String>,
    /// Never move a sequence backwards (deleted IDs are not reused).
    pub never_rewind: bool,
    /// Compute and report, change nothing.
    pub dry_run: bool,
    /// The URL of the database the connection is open on: with many sequences, a second
    /// connection shares the reads, on the same snapshot, while the first holds the locks
    /// (PostgreSQL; ignored for SQLite).
    pub helper: Option<DatabaseUrl>,
}

#[derive(Debug, Clone, Default)]
pub struct ResetReport {
    /// Every sequence examined, as it was before realigning.
    pub before: Vec<SequenceState>,
    /// The moves made (or, with dry_run, that would be made).
    pub changes: Vec<Change>,
    /// The SQL statements run (or that would run) to make the moves.
    pub statements: Vec<String>,
}

/// Reads the state of the sequences feeding `tables` (all when empty), without changing
/// anything. Used by `sequences` and `reset-sequences --check`.
pub fn inspect(conn: &mut Connection, tables: &[String]) -> Result<Vec<SequenceState>> {
    inspect_with(conn, tables, None)
}

/// [`inspect`]; with `helper` (the URL of the database `conn` is open on) and many sequences,
/// a second connection shares the reads on the same snapshot (PostgreSQL).
pub fn inspect_with(
    conn: &mut Connection,
    tables: &[String],
    helper: Option<&DatabaseUrl>,
) -> Result<Vec<SequenceState>> {
    conn.transaction(TxMode::Snapshot, |conn| {
        let helper = start_helper(conn, helper, tables.is_empty())?;
        let catalog = Catalog::read_for_sequences(conn)?;
        let selected = select(&catalog, tables)?;
        states(conn, &catalog, &selected, helper)
    })
}

/// `reset-sequences`: realign in one transaction of its own (or a savepoint of the caller's).
pub fn reset(conn: &mut Connection, opts: &ResetOptions) -> Result<ResetReport> {
    conn.transaction(TxMode::ReadWrite, |conn| {
        let helper = start_helper(conn, opts.helper.as_ref(), opts.tables.is_empty())?;
        let catalog = Catalog::read_for_sequences(conn)?;
        let selected = select(&catalog, &opts.tables)?;
        realign_with(conn, &catalog, &selected, opts, helper)
    })
}

/// The second connection for the reads (PostgreSQL only), started before the catalog is read
/// when `all` sequences are to be read.
fn start_helper(
    conn: &mut Connection,
    url: Option<&DatabaseUrl>,
    all: bool,
) -> Result<Option<pg::Helper>> {
    match url {
        Some(url) if conn.backend() == Backend::Postgres => pg::Helper::start(conn, url, all),
        _ => Ok(None),
    }
}

/// The sequences feeding any of `tables` (user names), or every sequence when empty.
fn select(catalog: &Catalog, tables: &[String]) -> Result<Vec<usize>> {
    let feeding = usable_sequences(catalog);
    if tables.is_empty() {
        return Ok(feeding);
    }
    let wanted: Vec<&QualifiedName> = tables
        .iter()
        .map(|t| catalog.find(t).map(|i| &catalog.tables[i].name))
        .collect::<Result<_>>()?;
    Ok(feeding
        .into_iter()
        .filter(|&s| {
            catalog.sequences[s]
                .feeds
                .iter()
                .any(|f| wanted.contains(&&f.table))
        })
        .collect())
}

/// Sequences that feed at least one table of the catalog (the catalog may know sequences that
/// only feed tables outside it, e.g. extension tables).
fn usable_sequences(catalog: &Catalog) -> Vec<usize> {
    (0..catalog.sequences.len())
        .filter(|&s| {
            catalog.sequences[s]
                .feeds
                .iter()
                .any(|f| catalog.table(&f.table).is_some())
        })
        .collect()
}

/// The sequences feeding any of the given catalog tables (by index).
pub(crate) fn sequences_feeding(catalog: &Catalog, tables: &[usize]) -> Vec<usize> {
    usable_sequences(catalog)
        .into_iter()
        .filter(|&s| {
            catalog.sequences[s].feeds.iter().any(|f| {
                catalog
                    .table_index(&f.table)
                    .is_some_and(|i| tables.contains(&i))
            })
        })
        .collect()
}

/// Realigns the given sequences inside the caller's transaction: locks every table they feed,
/// reads the values, computes targets and (unless `dry_run`) moves them. Errors before moving
/// anything when any sequence is exhausted.
pub(crate) fn realign(
    conn: &mut Connection,
    catalog: &Catalog,
    sequences: &[usize],
    never_rewind: bool,
    dry_run: bool,
) -> Result<ResetReport> {
    let opts = ResetOptions {
        never_rewind,
        dry_run,
        ..Default::default()
    };
    realign_with(conn, catalog, sequences, &opts, None)
}

/// [`realign`] with the options of `reset` (its `tables` already applied to `sequences`) and
/// an optional second connection for the reads ([`ResetOptions::helper`]).
fn realign_with(
    conn: &mut Connection,
    catalog: &Catalog,
    sequences: &[usize],
    opts: &ResetOptions,
    helper: Option<pg::Helper>,
) -> Result<ResetReport> {
    let (never_rewind, dry_run) = (opts.never_rewind, opts.dry_run);
    if sequences.is_empty() {
        return Ok(ResetReport::default());
    }
    let mut locked: Vec<&QualifiedName> = sequences
        .iter()
        .flat_map(|&s| catalog.sequences[s].feeds.iter().map(|f| &f.table))
        .filter(|t| catalog.table(t).is_some())
        .collect();
    locked.sort();
    locked.dedup();
    let lock_sql = match conn.backend() {
        Backend::Postgres => Some(pg::lock_sql(&locked)),
        Backend::Sqlite => None, // BEGIN IMMEDIATE already holds the database's write lock
    };
    if let Some(sql) = &lock_sql {
        if !dry_run {
            conn.execute(sql)?;
        }
    }
    let before = states(conn, catalog, sequences, helper)?;
    if let Some(bad) = before.iter().find(|s| s.target.is_none()) {
        return Err(Error::Sequence {
            sequence: bad.sequence.clone(),
            message: format!(
                "no next value past {} fits between MINVALUE and MAXVALUE (feeds {})",
                bad.column_extreme
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                bad.feeds.join(", ")
            ),
        });
    }
    let mut changes = Vec::new();
    let mut moves = Vec::new();
    for (state, &s) in before.iter().zip(sequences) {
        let mut target = state.target.expect("checked above");
        // A sequence already past its bounds (nextval fails) is moved back even then.
        let seq = &catalog.sequences[s];
        let usable = (seq.min..=seq.max).contains(&state.next_value);
        // A sequence feeding a non-numeric column (`'INV-' || nextval(...)`) may only move
        // forward: values it handed out cannot be read back from that column.
        let forward_only = never_rewind || state.status == Status::Unchecked;
        if forward_only && usable {
            target = if state.increment > 0 {
                target.max(state.next_value)
            } else {
                target.min(state.next_value)
            };
        }
        if target != state.next_value {
            changes.push(Change {
                sequence: state.sequence.clone(),
                from: state.next_value,
                to: target,
            });
            moves.push((s, target));
        }
    }
    let mut statements: Vec<String> = Vec::new();
    if !moves.is_empty() {
        if let Some(sql) = lock_sql {
            // LOCK only works inside a transaction block: the printed script is one.
            statements.push("BEGIN;".into());
            statements.push(sql);
        }
        statements.extend(
            moves
                .iter()
                .map(|&(s, target)| display_move(conn.backend(), &catalog.sequences[s], target)),
        );
        if conn.backend() == Backend::Postgres {
            statements.push("COMMIT;".into());
        }
        if !dry_run {
            match conn.backend() {
                Backend::Postgres => pg::apply(conn, catalog, &moves)?,
                Backend::Sqlite => sqlite::apply(conn, catalog, &moves)?,
            }
        }
    }
    Ok(ResetReport {
        before,
        changes,
        statements,
    })
}

/// A numeric column fed by a sequence, as the backends read it.
struct FedColumn<'a> {
    /// Position of the sequence in the list being read.
    pub seq: usize,
    pub table: &'a QualifiedName,
    pub column: &'a str,
    /// An integer type: its MAX/MIN is exact as is. Other numeric types (numeric, float) are
    /// rounded outward, since the sequence cares about the integer part that would collide.
    pub integer: bool,
}

/// Reads current values and column extremes and computes each sequence's status.
fn states(
    conn: &mut Connection,
    catalog: &Catalog,
    sequences: &[usize],
    helper: Option<pg::Helper>,
) -> Result<Vec<SequenceState>> {
    if sequences.is_empty() {
        return Ok(Vec::new());
    }
    let seqs: Vec<&Sequence> = sequences.iter().map(|&s| &catalog.sequences[s]).collect();
    // Only numeric columns can be compared with a sequence value.
    let mut columns: Vec<FedColumn> = Vec::new();
    let mut skipped: Vec<Vec<String>> = vec![Vec::new(); seqs.len()];
    for (i, seq) in seqs.iter().enumerate() {
        for f in &seq.feeds {
            let Some(table) = catalog.table(&f.table) else {
                continue;
            };
            match f.kind {
                ValueKind::Integer | ValueKind::Number => columns.push(FedColumn {
                    seq: i,
                    table: &table.name,
                    column: f.column.as_str(),
                    integer: f.kind == ValueKind::Integer,
                }),
                _ => skipped[i].push(format!("{}.{}", table.key, f.column)),
            }
        }
    }
    // (current values, the extreme in each sequence's direction)
    let (current, extremes) = match conn.backend() {
        Backend::Postgres => pg::read(conn, &seqs, &columns, helper)?,
        Backend::Sqlite => {
            let columns: Vec<(usize, &QualifiedName, &str)> =
                columns.iter().map(|c| (c.seq, c.table, c.column)).collect();
            let current = sqlite::current_values(conn, &seqs)?;
            let extremes = sqlite::extremes(conn, seqs.len(), &columns)?
                .into_iter()
                .zip(&seqs)
                .map(|((max, min), s)| if s.increment > 0 { max } else { min })
                .collect::<Vec<_>>();
            (current, extremes)
        }
    };
    let mut out = Vec::with_capacity(seqs.len());
    for (i, seq) in seqs.iter().enumerate() {
        let (last_value, mut next_value) = current[i];
        let ascending = seq.increment > 0;
        // A CYCLE sequence past its bound wraps around instead of failing.
        if seq.cycle && !(seq.min..=seq.max).contains(&next_value) {
            next_value = if ascending { seq.min } else { seq.max };
        }
        let extreme = extremes[i];
        let target = target_for(seq, extreme);
        let in_bounds = (seq.min..=seq.max).contains(&next_value);
        let status = match (target, extreme) {
            // Some fed column is not numeric: its values cannot be compared with the sequence.
            _ if !skipped[i].is_empty() => Status::Unchecked,
            (None, _) => Status::Exhausted,
            // nextval would fail: MAXVALUE (MINVALUE) was reached.
            _ if !in_bounds => Status::Exhausted,
            (Some(t), _) if t == next_value => Status::Ok,
            (_, Some(e)) if (ascending && next_value <= e) || (!ascending && next_value >= e) => {
                Status::Behind
            }
            _ => Status::Ahead,
        };
        out.push(SequenceState {
            sequence: crate::catalog::table_key(&seq.name, &catalog.default_schema),
            name: seq.name.clone(),
            feeds: seq
                .feeds
                .iter()
                .filter_map(|f| {
                    catalog
                        .table(&f.table)
                        .map(|t| format!("{}.{}", t.key, f.column))
                })
                .collect(),
            last_value,
            next_value,
            column_extreme: extreme,
            target,
            increment: seq.increment,
            status,
            skipped_columns: std::mem::take(&mut skipped[i]),
        });
    }
    Ok(out)
}

/// Folds one column's (MAX, MIN) into a sequence's running (MAX, MIN) across its columns.
fn merge_extremes(slot: &mut (Option<i128>, Option<i128>), max: Option<i128>, min: Option<i128>) {
    let pick = |a: Option<i128>, b: Option<i128>, f: fn(i128, i128) -> i128| match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    };
    slot.0 = pick(slot.0, max, i128::max);
    slot.1 = pick(slot.1, min, i128::min);
}

/// The exact next value a sequence should have given the extreme of its columns (see the module
/// doc), or None when no such value fits in its bounds.
pub(crate) fn target_for(seq: &Sequence, extreme: Option<i128>) -> Option<i128> {
    let Some(e) = extreme else {
        return Some(seq.start);
    };
    let t = e + seq.increment;
    if seq.increment > 0 {
        (t <= seq.max).then_some(t.max(seq.min))
    } else {
        (t >= seq.min).then_some(t.min(seq.max))
    }
}

/// The statement shown for a move in dry-run output; it does exactly what `apply` does.
fn display_move(backend: Backend, seq: &Sequence, target: i128) -> String {
    match backend {
        Backend::Postgres => {
            let (value, is_called) = pg::setval_args(seq, target);
            format!(
                "SELECT setval({}, {value}, {is_called});",
                quote_literal(&seq.name.sql())
            )
        }
        Backend::Sqlite => sqlite::display_move(seq, target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(start: i128, inc: i128, min: i128, max: i128) -> Sequence {
        Sequence {
            name: QualifiedName {
                schema: "public".into(),
                name: "s".into(),
            },
            start,
            increment: inc,
            min,
            max,
            cycle: false,
            feeds: vec![],
        }
    }

    #[test]
    fn targets_follow_direction_and_bounds() {
        let asc = seq(1, 1, 1, i64::MAX as i128);
        assert_eq!(target_for(&asc, None), Some(1));
        assert_eq!(target_for(&asc, Some(41)), Some(42));
        assert_eq!(
            target_for(&asc, Some(-5)),
            Some(1),
            "clamped up to MINVALUE"
        );
        let by10 = seq(100, 10, 1, 1000);
        assert_eq!(
            target_for(&by10, Some(995)),
            None,
            "past MAXVALUE is exhausted"
        );
        assert_eq!(target_for(&by10, Some(990)), Some(1000));
        let desc = seq(-1, -1, -1000, -1);
        assert_eq!(target_for(&desc, None), Some(-1));
        assert_eq!(target_for(&desc, Some(-50)), Some(-51));
        assert_eq!(
            target_for(&desc, Some(7)),
            Some(-1),
            "clamped down to MAXVALUE"
        );
        assert_eq!(target_for(&desc, Some(-1000)), None);
    }
}
