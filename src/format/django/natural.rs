//! Natural keys (`dumpdata --natural-foreign --natural-primary`).
//!
//! A model's natural key is known for `contenttypes.contenttype` (app_label, model),
//! `auth.permission` (codename, app_label, model: the content type's key nested) and any model
//! whose table has exactly one unique constraint (its columns, in order; a foreign-key column in
//! it takes the referenced model's natural key, flattened, as Django's `natural_key()` does).
//! Anything else is an error naming the model.
//!
//! References resolve first against the objects of the same load (kept in memory, per table, only
//! for tables natural keys are used for), then against the database. When a table turns out to
//! need its keys kept after some of its objects went by unrecorded, the translation starts over
//! recording it (`restart`): memory stays proportional to the natural-key tables only.
//! Objects without a pk take the pk of the row with their natural key, else a new id in file
//! order (one past the largest id in the table), as loaddata gives them.

use std::collections::{HashMap, HashSet};

use serde_json::value::RawValue;

use crate::backend::{Backend, Connection};
use crate::catalog::{Catalog, Table};
use crate::error::Result;

#[derive(Debug, Default)]
pub(super) struct NaturalKeys {
    /// Per recorded table: natural key (text forms) → pk (JSON).
    recorded: HashMap<usize, HashMap<Vec<String>, String>>,
    /// Tables that had objects so far.
    seen: HashSet<usize>,
    /// Next id for new objects without a pk.
    next_id: HashMap<usize, i128>,
    /// Set when a table must be recorded from the start: the translation starts over.
    pub restart: Option<usize>,
}

/// A user-facing problem (the caller adds where it is).
pub(super) type Problem = String;

/// The text form a natural-key value is compared in: a string's content, else the JSON text.
pub(super) fn key_text(raw: &str) -> String {
    if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_string())
    } else {
        raw.to_string()
    }
}

impl NaturalKeys {
    pub(super) fn recording(tables: &[usize]) -> Self {
        NaturalKeys {
            recorded: tables.iter().map(|&t| (t, HashMap::new())).collect(),
            ..Default::default()
        }
    }

    pub(super) fn tables_recorded(&self) -> Vec<usize> {
        self.recorded.keys().copied().collect()
    }

    pub(super) fn is_recorded(&self, t: usize) -> bool {
        self.recorded.contains_key(&t)
    }

    /// Starts recording `t`; false (and `restart` set) when objects of it already went by.
    fn start_recording(&mut self, t: usize) -> bool {
        if self.recorded.contains_key(&t) {
            return true;
        }
        if self.seen.contains(&t) {
            self.restart = Some(t);
            return false;
        }
        self.recorded.insert(t, HashMap::new());
        true
    }

    pub(super) fn saw(&mut self, t: usize) {
        self.seen.insert(t);
    }

    /// The columns (indices) of `t`'s natural key.
    pub(super) fn key_columns(catalog: &Catalog, t: usize) -> Option<Vec<usize>> {
        let table = &catalog.tables[t];
        let names: Vec<String> = match table.name.name.as_str() {
            "django_content_type" => vec!["app_label".into(), "model".into()],
            "auth_permission" => vec!["codename".into(), "content_type_id".into()],
            _ => match table.unique.as_slice() {
                [one] => one.clone(),
                _ => return None,
            },
        };
        names
            .iter()
            .map(|n| table.columns.iter().position(|c| &c.name == n))
            .collect()
    }

    /// The table a single-column foreign key of `table` on `column` references, and the
    /// referenced column.
    pub(super) fn referenced(
        catalog: &Catalog,
        table: &Table,
        column: &str,
    ) -> Option<(usize, String)> {
        catalog
            .foreign_keys
            .iter()
            .find(|fk| fk.table == table.name && fk.columns.len() == 1 && fk.columns[0] == column)
            .and_then(|fk| {
                catalog
                    .table_index(&fk.ref_table)
                    .map(|t| (t, fk.ref_columns[0].clone()))
            })
    }

    /// How many flat values `t`'s natural key has (nested foreign keys flattened).
    fn arity(catalog: &Catalog, t: usize, depth: usize) -> Option<usize> {
        if depth > 8 {
            return None;
        }
        let table = &catalog.tables[t];
        let mut n = 0;
        for c in Self::key_columns(catalog, t)? {
            let col = &table.columns[c].name;
            n += match Self::referenced(catalog, table, col) {
                Some((rt, _)) if rt != t => Self::arity(catalog, rt, depth + 1)?,
                _ => 1,
            };
        }
        Some(n)
    }

    fn no_key(catalog: &Catalog, t: usize) -> Problem {
        format!(
            "table {} has no natural key dbfixtures knows (it needs exactly one unique \
             constraint); dump it without --natural-foreign / --natural-primary",
            catalog.tables[t].key
        )
    }

    /// Turns a flat natural key of `t` into the text forms of its key columns, resolving the
    /// nested foreign keys. `Ok(None)`: a restart is needed.
    fn key_texts(
        &mut self,
        conn: &mut Connection,
        catalog: &Catalog,
        t: usize,
        flat: &[String],
    ) -> Result<std::result::Result<Option<Vec<String>>, Problem>> {
        let Some(cols) = Self::key_columns(catalog, t) else {
            return Ok(Err(Self::no_key(catalog, t)));
        };
        if Self::arity(catalog, t, 0) != Some(flat.len()) {
            return Ok(Err(format!(
                "a natural key of {} has {} values, found {}",
                catalog.tables[t].key,
                Self::arity(catalog, t, 0).unwrap_or(0),
                flat.len()
            )));
        }
        let table = &catalog.tables[t];
        let mut out = Vec::with_capacity(cols.len());
        let mut i = 0;
        for c in cols {
            let col = &table.columns[c].name;
            match Self::referenced(catalog, table, col) {
                Some((rt, rcol)) if rt != t => {
                    let n = Self::arity(catalog, rt, 1).unwrap_or(1);
                    match self.resolve_flat(conn, catalog, rt, &rcol, &flat[i..i + n])? {
                        Ok(Some(v)) => out.push(key_text(&v)),
                        Ok(None) => return Ok(Ok(None)),
                        Err(p) => return Ok(Err(p)),
                    }
                    i += n;
                }
                _ => {
                    out.push(flat[i].clone());
                    i += 1;
                }
            }
        }
        Ok(Ok(Some(out)))
    }

    /// Resolves a reference given as a natural key (the JSON list) to the referenced column's
    /// value (JSON). `Ok(Ok(None))`: a restart is needed.
    pub(super) fn resolve(
        &mut self,
        conn: &mut Connection,
        catalog: &Catalog,
        t: usize,
        ref_col: &str,
        list: &RawValue,
    ) -> Result<std::result::Result<Option<String>, Problem>> {
        let elems: Vec<&RawValue> = match serde_json::from_str(list.get()) {
            Ok(e) => e,
            Err(_) => {
                return Ok(Err(format!(
                    "a natural key is a list, found {}",
                    list.get()
                )))
            }
        };
        let flat: Vec<String> = elems.iter().map(|e| key_text(e.get())).collect();
        self.resolve_flat(conn, catalog, t, ref_col, &flat)
    }

    fn resolve_flat(
        &mut self,
        conn: &mut Connection,
        catalog: &Catalog,
        t: usize,
        ref_col: &str,
        flat: &[String],
    ) -> Result<std::result::Result<Option<String>, Problem>> {
        let key = match self.key_texts(conn, catalog, t, flat)? {
            Ok(Some(k)) => k,
            Ok(None) => return Ok(Ok(None)),
            Err(p) => return Ok(Err(p)),
        };
        let table = &catalog.tables[t];
        let by_pk = table.primary_key.len() == 1 && table.primary_key[0] == ref_col;
        if by_pk {
            if !self.start_recording(t) {
                return Ok(Ok(None));
            }
            if let Some(pk) = self.recorded[&t].get(&key) {
                return Ok(Ok(Some(pk.clone())));
            }
        }
        match lookup(conn, catalog, t, ref_col, &key)? {
            Some(v) => Ok(Ok(Some(v))),
            None => Ok(Err(format!(
                "no row of {} has the natural key {}",
                table.key,
                serde_json::to_string(&flat).unwrap_or_default()
            ))),
        }
    }

    /// The pk of an object given without one: the row with its natural key, else a new id.
    /// `key` holds the object's own values of the key columns (text forms).
    pub(super) fn pk_for(
        &mut self,
        conn: &mut Connection,
        catalog: &Catalog,
        t: usize,
        key: Vec<String>,
    ) -> Result<std::result::Result<Option<String>, Problem>> {
        if !self.start_recording(t) {
            return Ok(Ok(None));
        }
        if let Some(pk) = self.recorded[&t].get(&key) {
            return Ok(Ok(Some(pk.clone())));
        }
        let table = &catalog.tables[t];
        let pk_col = table.primary_key[0].clone();
        let pk = match lookup(conn, catalog, t, &pk_col, &key)? {
            Some(pk) => pk,
            None => {
                let next = match self.next_id.get(&t) {
                    Some(n) => *n,
                    None => {
                        let max: Option<i128> = conn
                            .query_json::<Option<serde_json::Number>>(&format!(
                                "SELECT CAST(max({}) AS TEXT) AS j FROM {}",
                                crate::catalog::quote_ident(&pk_col),
                                table.name.sql()
                            ))?
                            .and_then(|n| n.to_string().parse().ok());
                        max.unwrap_or(0) + 1
                    }
                };
                self.next_id.insert(t, next + 1);
                next.to_string()
            }
        };
        self.recorded
            .get_mut(&t)
            .expect("recording")
            .insert(key, pk.clone());
        Ok(Ok(Some(pk)))
    }

    /// Records an object of `t` with a pk (when `t` is recorded), and makes sure ids given to
    /// objects without one stay past it.
    pub(super) fn record(&mut self, t: usize, key: Option<Vec<String>>, pk: &str) {
        if let (Some(key), Some(map)) = (key, self.recorded.get_mut(&t)) {
            map.insert(key, pk.to_string());
        }
        if let (Ok(n), Some(next)) = (pk.parse::<i128>(), self.next_id.get_mut(&t)) {
            if n >= *next {
                *next = n + 1;
            }
        }
    }
}

/// The JSON value of `select` in the row of `t` whose key columns have the text forms `key`.
fn lookup(
    conn: &mut Connection,
    catalog: &Catalog,
    t: usize,
    select: &str,
    key: &[String],
) -> Result<Option<String>> {
    let table = &catalog.tables[t];
    let cols: Vec<&str> = NaturalKeys::key_columns(catalog, t)
        .unwrap_or_default()
        .into_iter()
        .map(|c| table.columns[c].name.as_str())
        .collect();
    let keys = serde_json::to_string(key).expect("strings serialize");
    let sql = match conn.backend() {
        Backend::Postgres => super::pg::lookup(table, select, &cols),
        Backend::Sqlite => super::sqlite::lookup(table, select, &cols),
    };
    let what = format!("looking up a natural key in {}", table.key);
    super::bound::query(conn, &sql, &keys, &what)
}
