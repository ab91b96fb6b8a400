//! `mask`: personal data replaced on the way out of `dump`, so the original values never touch
//! the disk.
//!
//! A rule is `TABLE.COLUMN=STRATEGY` (`schema.table.column` too; `*` and `?` globs in either
//! part, e.g. `*.email=email`), from `--mask` flags and the config file's `[mask]` section. A
//! [`MaskPlan`] resolves the rules against the catalog once, before the first byte is written;
//! each row then goes through one [`TableMask::apply`] call, whatever produced it.
//!
//! Invariants:
//! - Every problem is found while planning, before output starts: an unknown table, column or
//!   strategy, a glob that matches nothing, two rules that disagree on a column, a key column
//!   (primary key, foreign key, or referenced by one), a generated column, a strategy that does
//!   not suit the column's type, `null` on a NOT NULL column, a length limit too short, and a
//!   strategy that could repeat values on a column with a unique constraint. The only error
//!   left for the row loop is a `date_shift` value that is not a date.
//! - Deterministic: a masked value is a function of the salt and the original value only
//!   (see `strategy`), so the same value masks the same way in every table, column and run.
//! - NULL stays NULL. `keep` leaves a column as it is (to exempt it from a glob).
//! - Precedence: a rule naming the column exactly beats a glob; at equal precedence a flag
//!   beats the config file; rules still tied must agree.
//! - The salt is never printed: [`MaskOptions`]' Debug shows whether there is one, not what.

pub mod strategy;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use hmac::Mac;

use crate::catalog::{glob_match, split_name, Catalog, Column, Table};
use crate::config::MaskSection;
use crate::error::{Error, Result};
use strategy::Key;
pub use strategy::Strategy;

/// The key used when no salt is given. Public, so such output is only pseudonymous: anyone can
/// recompute the mask of a guessed original.
pub const DEFAULT_SALT: &str = "dbfixtures default mask salt (public: give your own)";

/// One rule as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `table.column`, `schema.table.column`, with globs allowed.
    pub pattern: String,
    pub strategy: Strategy,
    /// Where it came from: `--mask` or the config file's path, for error messages.
    pub source: String,
}

impl Rule {
    /// Parses `TABLE.COLUMN=STRATEGY`.
    pub fn parse(text: &str, source: &str) -> Result<Rule> {
        let bad = |message: String| Error::Mask {
            rule: text.to_string(),
            origin: source.to_string(),
            message,
        };
        let (pattern, strategy) = text
            .rsplit_once('=')
            .ok_or_else(|| bad("expected TABLE.COLUMN=STRATEGY, e.g. users.email=email".into()))?;
        Rule::new(pattern, strategy, source).map_err(|e| match e {
            Error::Mask { message, .. } => bad(message),
            other => other,
        })
    }

    /// A rule from its two halves (a config file's key and value).
    pub fn new(pattern: &str, strategy: &str, source: &str) -> Result<Rule> {
        let pattern = pattern.trim();
        let err = |message: String| Error::Mask {
            rule: format!("{pattern}={}", strategy.trim()),
            origin: source.to_string(),
            message,
        };
        let parts = split_name(pattern).map_err(|m| err(format!("bad name {pattern:?}: {m}")))?;
        if !(2..=3).contains(&parts.len()) {
            return Err(err(
                "expected TABLE.COLUMN or SCHEMA.TABLE.COLUMN before the =".into(),
            ));
        }
        Ok(Rule {
            pattern: pattern.to_string(),
            strategy: strategy.parse().map_err(err)?,
            source: source.to_string(),
        })
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::Mask {
            rule: format!("{}={}", self.pattern, self.strategy),
            origin: self.source.clone(),
            message: message.into(),
        }
    }

    fn is_glob(&self) -> bool {
        self.pattern.contains(['*', '?'])
    }

    /// (table part as a name `Catalog::find` accepts, column part).
    fn split(&self) -> (String, String) {
        let mut parts = split_name(&self.pattern).expect("checked in Rule::new");
        let column = parts.pop().expect("two parts at least");
        let quote = |s: &str| {
            if s.contains(['.', '"']) {
                crate::catalog::quote_ident(s)
            } else {
                s.to_string()
            }
        };
        let table: Vec<String> = parts.iter().map(|p| quote(p)).collect();
        (table.join("."), column)
    }

    fn is_flag(&self) -> bool {
        self.source == FLAG
    }
}

const FLAG: &str = "--mask";

/// The masking rules of one dump and the salt they are keyed with.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MaskOptions {
    pub rules: Vec<Rule>,
    salt: Option<String>,
}

impl fmt::Debug for MaskOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaskOptions")
            .field("rules", &self.rules)
            .field("salt", &self.salt.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

impl MaskOptions {
    /// Rules and a salt (`None` or empty: the public default, see [`DEFAULT_SALT`]).
    pub fn new(rules: Vec<Rule>, salt: Option<String>) -> MaskOptions {
        MaskOptions {
            rules,
            salt: salt.filter(|s| !s.is_empty()),
        }
    }

    /// The config file's `[mask]` rules, then the `--mask` flags: a flag for the same pattern
    /// replaces the file's rule.
    pub fn from_sources(
        section: &MaskSection,
        config_path: Option<&Path>,
        flags: &[String],
        salt: Option<String>,
    ) -> Result<MaskOptions> {
        let file = config_path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| crate::config::DEFAULT_FILE.to_string());
        let mut by_pattern: BTreeMap<String, Rule> = BTreeMap::new();
        for (pattern, strategy) in &section.rules {
            let r = Rule::new(pattern, strategy, &file)?;
            by_pattern.insert(r.pattern.clone(), r);
        }
        let mut rules: Vec<Rule> = Vec::new();
        for f in flags {
            let r = Rule::parse(f, FLAG)?;
            by_pattern.remove(&r.pattern);
            rules.retain(|o| o.pattern != r.pattern);
            rules.push(r);
        }
        let mut all: Vec<Rule> = by_pattern.into_values().collect();
        all.extend(rules);
        Ok(MaskOptions::new(all, salt))
    }

    /// Some rule changes data (not only `keep`).
    pub fn is_active(&self) -> bool {
        self.rules.iter().any(|r| r.strategy != Strategy::Keep)
    }

    /// A salt was given (else the output is only pseudonymous: see [`DEFAULT_SALT`]).
    pub fn has_salt(&self) -> bool {
        self.salt.is_some()
    }

    fn key(&self) -> Key {
        let salt = self.salt.as_deref().unwrap_or(DEFAULT_SALT);
        Key::new_from_slice(salt.as_bytes()).expect("HMAC takes keys of any length")
    }
}

/// The masks of every selected table, checked against the catalog.
pub struct MaskPlan {
    /// By catalog table index.
    tables: BTreeMap<usize, TableMask>,
    none: TableMask,
}

impl MaskPlan {
    /// No masking at all.
    pub fn none() -> MaskPlan {
        MaskPlan {
            tables: BTreeMap::new(),
            none: TableMask::default(),
        }
    }

    /// Resolves `opts` against `catalog` for the tables `selected` (catalog indices). Every
    /// rule is checked to name something that exists; the columns of the selected tables are
    /// checked to suit their strategy (see the module doc).
    /// `postgres`: the catalog is PostgreSQL's (its `integer` is 32 bits; SQLite's is 64).
    pub fn new(
        catalog: &Catalog,
        selected: &[usize],
        opts: &MaskOptions,
        postgres: bool,
    ) -> Result<MaskPlan> {
        if opts.rules.is_empty() {
            return Ok(MaskPlan::none());
        }
        // (table index, column name) -> the rules that match it.
        let mut matched: BTreeMap<(usize, &str), Vec<&Rule>> = BTreeMap::new();
        for rule in &opts.rules {
            let (table_pat, column_pat) = rule.split();
            if rule.is_glob() {
                let mut any = false;
                for (ti, t) in catalog.tables.iter().enumerate() {
                    let qualified = format!("{}.{}", t.name.schema, t.name.name);
                    let table_hit = [t.key.as_str(), qualified.as_str(), t.name.name.as_str()]
                        .iter()
                        .any(|c| glob_match(&table_pat, c));
                    if !table_hit {
                        continue;
                    }
                    for c in t.stored_columns() {
                        if glob_match(&column_pat, &c.name) {
                            any = true;
                            matched.entry((ti, c.name.as_str())).or_default().push(rule);
                        }
                    }
                }
                if !any {
                    return Err(rule.error("the pattern matches no column of any table"));
                }
            } else {
                let ti = catalog
                    .find(&table_pat)
                    .map_err(|e| rule.error(e.to_string()))?;
                let t = &catalog.tables[ti];
                let Some(c) = t.column(&column_pat) else {
                    let names: Vec<&str> = t.stored_columns().map(|c| c.name.as_str()).collect();
                    return Err(rule.error(format!(
                        "table {} has no column {column_pat:?} (it has {})",
                        t.key,
                        names.join(", ")
                    )));
                };
                if c.generated {
                    return Err(rule.error(format!(
                        "{}.{} is a generated column, which is never dumped; mask the columns \
                         it is computed from",
                        t.key, c.name
                    )));
                }
                matched.entry((ti, c.name.as_str())).or_default().push(rule);
            }
        }

        let mut tables: BTreeMap<usize, TableMask> = BTreeMap::new();
        let key = opts.key();
        for &ti in selected {
            let table = &catalog.tables[ti];
            let mut columns = Vec::new();
            let mut any = false;
            for column in table.stored_columns() {
                let Some(rules) = matched.get(&(ti, column.name.as_str())) else {
                    columns.push(None);
                    continue;
                };
                let rule = winner(table, column, rules)?;
                if rule.strategy == Strategy::Keep {
                    columns.push(None);
                    continue;
                }
                let chars = check_column(catalog, table, column, rule.strategy, postgres)
                    .map_err(|m| rule.error(format!("{}.{}: {m}", table.key, column.name)))?;
                let ty = column.type_name.to_ascii_lowercase();
                any = true;
                columns.push(Some(ColumnMask {
                    strategy: rule.strategy,
                    fit: strategy::Fit {
                        chars,
                        scale: numeric_scale(&ty),
                    },
                    name: column.name.clone(),
                }));
            }
            if any {
                tables.insert(
                    ti,
                    TableMask {
                        columns,
                        key: Some(key.clone()),
                    },
                );
            }
        }
        Ok(MaskPlan {
            tables,
            none: TableMask::default(),
        })
    }

    /// The mask of one table (catalog index); a no-op for a table without rules.
    pub fn table(&self, index: usize) -> &TableMask {
        self.tables.get(&index).unwrap_or(&self.none)
    }

    /// How many columns are masked, over all tables.
    pub fn masked_columns(&self) -> usize {
        self.tables
            .values()
            .map(|t| t.columns.iter().flatten().count())
            .sum()
    }
}

/// The rule that decides a column: exact over glob, then flag over file; ties must agree.
fn winner<'r>(table: &Table, column: &Column, rules: &[&'r Rule]) -> Result<&'r Rule> {
    let rank = |r: &Rule| (!r.is_glob(), r.is_flag());
    let best = rules
        .iter()
        .map(|r| rank(r))
        .max()
        .expect("at least one rule");
    let top: Vec<&Rule> = rules.iter().copied().filter(|r| rank(r) == best).collect();
    if let Some(other) = top.iter().find(|r| r.strategy != top[0].strategy) {
        return Err(top[0].error(format!(
            "{}.{} is also matched by {}={} ({}); name the column exactly to decide",
            table.key, column.name, other.pattern, other.strategy, other.source
        )));
    }
    Ok(top[0])
}

/// Checks that `strategy` can mask `column` and returns the column's length limit (characters).
fn check_column(
    catalog: &Catalog,
    table: &Table,
    column: &Column,
    strategy: Strategy,
    postgres: bool,
) -> std::result::Result<Option<usize>, String> {
    if table.primary_key.contains(&column.name) {
        return Err(format!(
            "the column is part of the primary key of {}; masking it would break every row \
             that references it",
            table.key
        ));
    }
    for fk in &catalog.foreign_keys {
        if fk.table == table.name && fk.columns.contains(&column.name) {
            return Err(format!(
                "the column is a foreign key ({}) to {}; masked, it would reference rows that \
                 do not exist",
                fk.name,
                crate::catalog::table_key(&fk.ref_table, &catalog.default_schema)
            ));
        }
        if fk.ref_table == table.name && fk.ref_columns.contains(&column.name) {
            return Err(format!(
                "the column is referenced by foreign key {} of {}; masking it would orphan \
                 those rows",
                fk.name,
                crate::catalog::table_key(&fk.table, &catalog.default_schema)
            ));
        }
    }
    let ty = column.type_name.to_ascii_lowercase();
    use crate::catalog::ValueKind as K;
    let texty = column.kind == K::Text
        && (ty.contains("char")
            || ty.contains("text")
            || ty.contains("clob")
            || ty == "citext"
            || ty == "name"
            || ty.trim().is_empty());
    let type_err = |wants: &str| {
        format!(
            "{strategy} needs {wants}, but the column is {}",
            if column.type_name.is_empty() {
                "untyped"
            } else {
                &column.type_name
            }
        )
    };
    match strategy {
        Strategy::Keep | Strategy::Null => {}
        Strategy::Redact => {
            if !texty && !matches!(column.kind, K::Json | K::Jsonb) {
                return Err(type_err("a text or json column"));
            }
        }
        s if s.writes_text() => {
            if !texty {
                return Err(type_err("a text column (text, varchar, char, citext)"));
            }
        }
        Strategy::Int { min, max } => {
            if !matches!(column.kind, K::Integer | K::Number) {
                return Err(type_err("an integer or numeric column"));
            }
            let bounds: Option<(i64, i64)> = match ty.as_str() {
                "smallint" if postgres => Some((i16::MIN.into(), i16::MAX.into())),
                "integer" if postgres => Some((i32::MIN.into(), i32::MAX.into())),
                _ => numeric_bound(&ty).map(|b| (-b, b)),
            };
            if let Some((lo, hi)) = bounds {
                if min < lo || max > hi {
                    return Err(format!(
                        "{strategy} does not fit the column's type {} ({lo}..{hi})",
                        column.type_name
                    ));
                }
            }
        }
        Strategy::DateShift { .. } => {
            if !(ty.contains("date") || ty.contains("timestamp")) {
                return Err(type_err("a date or timestamp column"));
            }
        }
        _ => unreachable!("every strategy is handled above"),
    }
    if strategy == Strategy::Null && !column.nullable {
        return Err("null on a NOT NULL column: the fixture would not load".into());
    }
    let limit = char_limit(&ty);
    let unique = table.unique.iter().find(|u| u.contains(&column.name));
    if let Some(u) = unique {
        if !strategy.keeps_unique() {
            return Err(format!(
                "the column has a unique constraint ({}) and {strategy} can give two rows the \
                 same value; use hash or email (or null where the column allows it)",
                u.join(", ")
            ));
        }
    }
    let min = strategy.min_len(unique.is_some());
    if let Some(n) = limit.filter(|&n| n < min) {
        return Err(format!(
            "the column holds at most {n} characters; {strategy} needs {min}{}",
            if unique.is_some() {
                " to keep values unique"
            } else {
                ""
            }
        ));
    }
    Ok(limit)
}

/// `character varying(255)`, `varchar(20)`, `character(3)`, `NCHAR(5)` → the length.
fn char_limit(ty: &str) -> Option<usize> {
    if !ty.contains("char") {
        return None;
    }
    let open = ty.find('(')?;
    let close = ty[open..].find(')')? + open;
    ty[open + 1..close].trim().parse().ok()
}

/// `numeric(5,2)` → 999 (the largest integer it holds).
fn numeric_bound(ty: &str) -> Option<i64> {
    let rest = ty.strip_prefix("numeric(")?.strip_suffix(')')?;
    let (p, s) = match rest.split_once(',') {
        Some((p, s)) => (p.trim().parse::<u32>().ok()?, s.trim().parse::<i64>().ok()?),
        None => (rest.trim().parse().ok()?, 0),
    };
    let digits = (p as i64 - s).clamp(0, 18) as u32;
    Some(10i64.pow(digits) - 1)
}

/// `numeric(6,2)` → 2.
fn numeric_scale(ty: &str) -> u32 {
    ty.strip_prefix("numeric(")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|r| r.split_once(','))
        .and_then(|(_, s)| s.trim().parse().ok())
        .unwrap_or(0)
}

/// One masked column.
#[derive(Clone)]
struct ColumnMask {
    strategy: Strategy,
    fit: strategy::Fit,
    name: String,
}

/// The masks of one table's stored columns, in column order.
#[derive(Clone, Default)]
pub struct TableMask {
    columns: Vec<Option<ColumnMask>>,
    key: Option<Key>,
}

/// A value that could not be masked (only `date_shift` on a value that is not a date).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskError {
    pub column: String,
    pub message: String,
}

impl TableMask {
    /// True when [`TableMask::apply`] changes nothing (no column of the table is masked).
    pub fn is_noop(&self) -> bool {
        self.key.is_none() || self.columns.iter().all(Option::is_none)
    }

    /// Nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.key.is_none()
    }

    /// Masks one row in place: `values` are the row's stored columns as fixture JSON, in column
    /// order. `scratch` is reused between calls.
    pub fn apply(
        &self,
        values: &mut [Vec<u8>],
        scratch: &mut Vec<u8>,
    ) -> std::result::Result<(), MaskError> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        for (value, mask) in values.iter_mut().zip(&self.columns) {
            let Some(mask) = mask else { continue };
            if value.as_slice() == b"null" {
                continue;
            }
            scratch.clear();
            strategy::apply(mask.strategy, key, value, mask.fit, scratch).map_err(|message| {
                MaskError {
                    column: mask.name.clone(),
                    message,
                }
            })?;
            std::mem::swap(value, scratch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_name_their_source() {
        let r = Rule::parse("users.email=email", FLAG).unwrap();
        assert_eq!(
            (r.pattern.as_str(), r.strategy),
            ("users.email", Strategy::Email)
        );
        let r = Rule::parse("sales.\"a.b\".c=int:1..2", FLAG).unwrap();
        assert_eq!(r.split(), ("sales.\"a.b\"".to_string(), "c".to_string()));
        for bad in [
            "users.email",
            "email=email",
            "a.b.c.d=null",
            "users.email=nope",
        ] {
            let e = Rule::parse(bad, FLAG).unwrap_err().to_string();
            assert!(
                e.contains(bad.split('=').next().unwrap()) && e.contains("--mask"),
                "{e}"
            );
        }
    }

    #[test]
    fn flags_replace_the_files_rule_for_the_same_pattern() {
        let section = MaskSection {
            rules: [
                ("users.email".to_string(), "hash".to_string()),
                ("*.phone".to_string(), "phone".to_string()),
            ]
            .into(),
        };
        let o = MaskOptions::from_sources(
            &section,
            Some(Path::new("x.toml")),
            &["users.email=email".into()],
            Some("s3cret".into()),
        )
        .unwrap();
        let got: Vec<(String, String, String)> = o
            .rules
            .iter()
            .map(|r| (r.pattern.clone(), r.strategy.to_string(), r.source.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("*.phone".into(), "phone".into(), "x.toml".into()),
                ("users.email".into(), "email".into(), "--mask".into())
            ]
        );
        assert!(o.has_salt() && o.is_active());
        assert!(!format!("{o:?}").contains("s3cret"));
        let e = MaskOptions::from_sources(
            &MaskSection {
                rules: [("users.email".to_string(), "emali".to_string())].into(),
            },
            Some(Path::new("x.toml")),
            &[],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("x.toml") && e.contains("emali"), "{e}");
    }

    #[test]
    fn type_limits() {
        assert_eq!(char_limit("character varying(255)"), Some(255));
        assert_eq!(char_limit("nchar(5)"), Some(5));
        assert_eq!(char_limit("text"), None);
        assert_eq!(numeric_bound("numeric(5,2)"), Some(999));
        assert_eq!(numeric_bound("numeric(3)"), Some(999));
        assert_eq!(numeric_bound("numeric"), None);
        assert_eq!(numeric_scale("numeric(6,2)"), 2);
        assert_eq!(numeric_scale("numeric"), 0);
    }
}
