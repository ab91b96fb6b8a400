//! Loading Django fixtures: each Django file is translated, streaming, into one native fixture
//! per table in a temporary directory, then everything (native inputs included) goes through
//! [`crate::load::load_paths`] inside one transaction that also replaces the listed m2m links.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::value::RawValue;

use super::natural::{self, NaturalKeys};
use super::read::{for_each_object, Object};
use super::{detect, open_decompressed, Detected, DjangoOptions, Format};
use crate::backend::{Backend, Connection};
use crate::catalog::{Catalog, Column, QualifiedName, ValueKind};
use crate::error::{DjangoLocation, Error, Result};
use crate::format::copy_text::push_json_string;
use crate::format::value::json_wrapper;
use crate::load::{LoadOptions, LoadReport};
use crate::progress::Progress;

/// Loads fixture files of either format in one transaction. With [`Format::Native`], or when no
/// input is a Django fixture, this is exactly [`crate::load::load_paths`].
pub fn load_paths(
    conn: &mut Connection,
    paths: &[PathBuf],
    opts: &LoadOptions,
    dj: &DjangoOptions,
    progress: &dyn Progress,
) -> Result<LoadReport> {
    if dj.format == Format::Native {
        return crate::load::load_paths(conn, paths, opts, progress);
    }
    let sources = expand(paths, dj.format)?;
    if sources.iter().all(|s| s.kind == Detected::Native) {
        return crate::load::load_paths(conn, paths, opts, progress);
    }
    // Migrations run first (the translation needs the tables they create), once, for both.
    crate::load::in_transaction(conn, opts, |conn| {
        let opts = &LoadOptions {
            migrate: false,
            ..opts.clone()
        };
        let catalog = Catalog::read(conn)?;
        let mut native: Vec<PathBuf> = Vec::new();
        let mut record = Vec::new();
        let translated = loop {
            let mut tr = Translator::new(&catalog, dj, NaturalKeys::recording(&record))?;
            native.clear();
            match translate_all(&mut tr, conn, &sources, &mut native, progress) {
                Ok(()) => break tr.finish()?,
                Err(_) if tr.nk.restart.is_some() => {
                    record = tr.nk.tables_recorded();
                    record.extend(tr.nk.restart);
                }
                Err(e) => return Err(e),
            }
        };
        for links in translated.links.values() {
            delete_links(conn, &catalog, links)?;
        }
        native.extend(translated.outs.iter().map(|o| o.path.clone()));
        let mut report = crate::load::load_paths(conn, &native, opts, progress)
            .map_err(|e| translated.map_error(e, &sources))?;
        report.files = sources.len();
        Ok(report)
    })
}

fn translate_all(
    tr: &mut Translator<'_>,
    conn: &mut Connection,
    sources: &[Source],
    native: &mut Vec<PathBuf>,
    progress: &dyn Progress,
) -> Result<()> {
    for (i, src) in sources.iter().enumerate() {
        if src.kind == Detected::Native {
            native.push(src.path.clone());
            continue;
        }
        progress.message(&format!("reading Django fixture {}", src.name));
        let input = open_decompressed(&src.path, &src.name)?;
        for_each_object(
            input,
            &src.name,
            src.kind == Detected::DjangoJsonl,
            &mut |index, obj| tr.object(conn, i, &src.name, index, obj),
        )?;
    }
    Ok(())
}

/// One input file with its decided format.
struct Source {
    name: String,
    path: PathBuf,
    kind: Detected,
    _spool: Option<tempfile::NamedTempFile>,
}

fn fixture_name(n: &str) -> bool {
    let n = super::strip_compression(n);
    !n.starts_with('.') && (n.ends_with(".json") || n.ends_with(".jsonl"))
}

/// Files as given, directories to their fixture files in name order, `-` to stdin (Django only
/// when `--format django` says so: stdin is read once).
fn expand(paths: &[PathBuf], format: Format) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            if format != Format::Django {
                out.push(source(
                    p.clone(),
                    "<stdin>".into(),
                    Some(Detected::Native),
                    None,
                )?);
                continue;
            }
            let mut spool = tempfile::NamedTempFile::new().map_err(|e| Error::io("<stdin>", e))?;
            std::io::copy(&mut std::io::stdin().lock(), &mut spool)
                .map_err(|e| Error::io("<stdin>", e))?;
            let path = spool.path().to_path_buf();
            out.push(source(path, "<stdin>".into(), None, Some(spool))?);
        } else if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p.display().to_string(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && f.file_name()
                            .is_some_and(|n| fixture_name(&n.to_string_lossy()))
                })
                .collect();
            files.sort();
            for f in files {
                let name = f.display().to_string();
                out.push(source(f, name, None, None)?);
            }
        } else {
            out.push(source(p.clone(), p.display().to_string(), None, None)?);
        }
    }
    if format == Format::Django {
        for s in &mut out {
            if s.kind == Detected::Native {
                // Forced: an object per line is what a Django file starting with `{` can be.
                s.kind = Detected::DjangoJsonl;
            }
        }
    }
    Ok(out)
}

fn source(
    path: PathBuf,
    name: String,
    kind: Option<Detected>,
    spool: Option<tempfile::NamedTempFile>,
) -> Result<Source> {
    if !path.exists() {
        // The native loader reports a missing path (as it always has).
        return Ok(Source {
            name,
            path,
            kind: Detected::Native,
            _spool: spool,
        });
    }
    let (path, spool) = match super::spool_decompressed(&path, &name)? {
        Some(s) => (s.path().to_path_buf(), Some(s)),
        None => (path, spool),
    };
    let kind = match kind {
        Some(k) => k,
        None => detect(&path, &name)?,
    };
    Ok(Source {
        name,
        path,
        kind,
        _spool: spool,
    })
}

/// How one field of a model is written.
#[derive(Debug, Clone)]
enum Field {
    /// A column (index into the table's columns).
    Column(usize),
    /// An auto-created many-to-many through table.
    M2m {
        through: usize,
        owner: String,
        target: String,
    },
    /// Left out (`--ignorenonexistent`).
    Ignored,
}

#[derive(Debug)]
struct Model {
    table: usize,
    pk: String,
    fields: HashMap<String, Field>,
}

/// The rows of one table being written as a native fixture, with where each came from.
struct TableOut {
    /// The table's own name (as the database's messages say it).
    table: String,
    path: PathBuf,
    out: BufWriter<File>,
    rows: u64,
    origin_path: PathBuf,
    origin: BufWriter<File>,
}

/// The links of one through table to replace: its columns and, per owner listed, the targets
/// it lists (as JSON: `[owner, [target, ...]]`).
#[derive(Debug)]
struct Links {
    through: usize,
    owner: String,
    target: String,
    /// None when the through table had no rows before the load (nothing to replace).
    owners: Option<Vec<String>>,
}

struct Translator<'c> {
    catalog: &'c Catalog,
    dj: &'c DjangoOptions,
    dir: tempfile::TempDir,
    /// By model label; None for a skipped model.
    models: HashMap<String, Option<Model>>,
    outs: HashMap<usize, TableOut>,
    links: HashMap<usize, Links>,
    row: Vec<u8>,
    nk: NaturalKeys,
}

/// What a translation produced.
struct Translated {
    outs: Vec<TableOut>,
    links: HashMap<usize, Links>,
    _dir: tempfile::TempDir,
}

/// Where an object is, for error messages.
struct At<'a> {
    input: usize,
    file: &'a str,
    index: usize,
    model: &'a str,
    pk: Option<&'a str>,
}

impl At<'_> {
    fn error(&self, field: Option<&str>, message: String) -> Error {
        Error::DjangoObject {
            location: Box::new(DjangoLocation {
                file: self.file.to_string(),
                line: None,
                column: None,
                object: Some(self.index),
                model: Some(self.model.to_string()),
                pk: self.pk.map(str::to_owned),
                field: field.map(str::to_owned),
            }),
            message,
        }
    }
}

impl<'c> Translator<'c> {
    fn new(catalog: &'c Catalog, dj: &'c DjangoOptions, nk: NaturalKeys) -> Result<Self> {
        Ok(Translator {
            catalog,
            dj,
            dir: tempfile::tempdir().map_err(|e| Error::io("temporary directory", e))?,
            models: HashMap::new(),
            outs: HashMap::new(),
            links: HashMap::new(),
            row: Vec::with_capacity(4096),
            nk,
        })
    }

    fn excluded(&self, label: &str) -> bool {
        let app = label.split('.').next().unwrap_or(label);
        self.dj
            .exclude
            .iter()
            .any(|e| e.eq_ignore_ascii_case(label) || e.eq_ignore_ascii_case(app))
    }

    /// The model's table, or None when its objects are skipped.
    fn model(&mut self, label: &str, at: &At<'_>) -> Result<Option<&mut Model>> {
        if !self.models.contains_key(label) {
            let m = self.resolve_model(label, at)?;
            self.models.insert(label.to_string(), m);
        }
        Ok(self.models.get_mut(label).and_then(Option::as_mut))
    }

    fn resolve_model(&self, label: &str, at: &At<'_>) -> Result<Option<Model>> {
        if self.excluded(label) {
            return Ok(None);
        }
        if !super::valid_model_label(label) {
            return Err(at.error(None, "\"model\" must be \"app_label.model\"".into()));
        }
        let table_name = self
            .dj
            .models
            .iter()
            .find(|(_, m)| m.eq_ignore_ascii_case(label))
            .map(|(t, _)| t.clone())
            .or_else(|| {
                super::BUILTIN_TABLES
                    .iter()
                    .find(|(m, _)| *m == label)
                    .map(|(_, t)| t.to_string())
            })
            .unwrap_or_else(|| label.replacen('.', "_", 1));
        let t = match self.catalog.find(&table_name) {
            Ok(t) => t,
            Err(_) if self.dj.ignore_nonexistent => return Ok(None),
            Err(_) => {
                return Err(at.error(
                    None,
                    format!(
                        "no table \"{table_name}\" for model {label}; a model with a custom \
                         db_table (or a proxy) needs --django-model TABLE={label} (or \
                         [django] models in the config file)"
                    ),
                ))
            }
        };
        let table = &self.catalog.tables[t];
        if table.primary_key.len() != 1 {
            return Err(at.error(
                None,
                format!(
                    "table {} has {} primary-key columns; Django models have one",
                    table.key,
                    table.primary_key.len()
                ),
            ));
        }
        Ok(Some(Model {
            table: t,
            pk: table.primary_key[0].clone(),
            fields: HashMap::new(),
        }))
    }

    /// How field `name` of the model on table `t` is written.
    fn resolve_field(&self, t: usize, name: &str, at: &At<'_>) -> Result<Field> {
        let table = &self.catalog.tables[t];
        for col in [name.to_string(), format!("{name}_id")] {
            if let Some(i) = table.columns.iter().position(|c| c.name == col) {
                return Ok(Field::Column(i));
            }
        }
        let through = QualifiedName {
            schema: table.name.schema.clone(),
            name: format!("{}_{name}", table.name.name),
        };
        if let Some(ti) = self.catalog.table_index(&through) {
            let fks: Vec<_> = self
                .catalog
                .foreign_keys
                .iter()
                .filter(|fk| fk.table == through && fk.columns.len() == 1)
                .collect();
            let to_owner: Vec<_> = fks.iter().filter(|fk| fk.ref_table == table.name).collect();
            let owner = match to_owner.as_slice() {
                [one] => Some(one.columns[0].clone()),
                [..] => to_owner
                    .iter()
                    .map(|fk| &fk.columns[0])
                    .find(|c| c.starts_with("from_"))
                    .cloned(),
            };
            if let (Some(owner), 2) = (owner, fks.len()) {
                let target = fks
                    .iter()
                    .map(|fk| fk.columns[0].clone())
                    .find(|c| *c != owner)
                    .expect("two foreign keys");
                return Ok(Field::M2m {
                    through: ti,
                    owner,
                    target,
                });
            }
        }
        if self.dj.ignore_nonexistent {
            return Ok(Field::Ignored);
        }
        Err(at.error(
            Some(name),
            format!(
                "table {} has no column \"{name}\" or \"{name}_id\", and there is no \
                 many-to-many table {}",
                table.key, through.name
            ),
        ))
    }

    fn object(
        &mut self,
        conn: &mut Connection,
        input: usize,
        file: &str,
        index: usize,
        obj: Object<'_>,
    ) -> Result<()> {
        let label: std::borrow::Cow<'_, str> = if obj.model.bytes().any(|b| b.is_ascii_uppercase())
        {
            obj.model.to_lowercase().into()
        } else {
            obj.model.as_ref().into()
        };
        let label = label.as_ref();
        let pk_text = obj.pk.map(RawValue::get);
        let at = At {
            input,
            file,
            index,
            model: label,
            pk: pk_text,
        };
        let Some(model) = self.model(label, &at)? else {
            return Ok(());
        };
        let t = model.table;
        let pk_col = model.pk.clone();
        let mut fields: Vec<(&str, &RawValue, Field)> = Vec::with_capacity(obj.fields.len());
        for (name, value) in &obj.fields {
            let name: &str = name;
            let value: &RawValue = value;
            let known = self.models[label]
                .as_ref()
                .and_then(|m| m.fields.get(name))
                .cloned();
            let f = match known {
                Some(f) => f,
                None => {
                    let f = self.resolve_field(t, name, &at)?;
                    if let Some(m) = self.models.get_mut(label).and_then(Option::as_mut) {
                        m.fields.insert(name.to_string(), f.clone());
                    }
                    f
                }
            };
            fields.push((name, value, f));
        }
        let catalog = self.catalog;
        let table = &catalog.tables[t];
        let need_key = obj.pk.is_none() || self.nk.is_recorded(t);
        let key_cols = if need_key {
            NaturalKeys::key_columns(catalog, t)
        } else {
            None
        };
        let mut key_vals: Vec<(usize, String)> = Vec::new();
        let mut row = std::mem::take(&mut self.row);
        row.clear();
        row.push(b'{');
        let mut m2m: Vec<(&str, &RawValue, usize, String, String)> = Vec::new();
        let mut field_pk: Option<&str> = None;
        for (name, value, field) in fields {
            match field {
                Field::Ignored => {}
                // A multi-table-inheritance child's parent link is its pk (written once).
                Field::Column(i) if table.columns[i].name == pk_col => {
                    if pk_text.is_none() {
                        field_pk = Some(value.get());
                    }
                }
                Field::Column(i) => {
                    let col = &table.columns[i];
                    let resolved;
                    let value = match natural_reference(catalog, table, col, value) {
                        Some((rt, rcol)) => {
                            let v = settle(self.nk.resolve(conn, catalog, rt, &rcol, value)?)
                                .map_err(|p| at.error(Some(name), p))?;
                            resolved = RawValue::from_string(v).expect("JSON from the database");
                            &*resolved
                        }
                        None => value,
                    };
                    if row.len() > 1 {
                        row.push(b',');
                    }
                    push_json_string(&mut row, col.name.as_bytes());
                    row.push(b':');
                    let start = row.len();
                    push_value(&mut row, col, value).map_err(|m| at.error(Some(name), m))?;
                    if key_cols.as_ref().is_some_and(|k| k.contains(&i)) {
                        let text = String::from_utf8_lossy(&row[start..]);
                        key_vals.push((i, natural::key_text(&text)));
                    }
                }
                Field::M2m {
                    through,
                    owner,
                    target,
                } => m2m.push((name, value, through, owner, target)),
            }
        }
        let key: Option<Vec<String>> = key_cols.as_ref().and_then(|cols| {
            cols.iter()
                .map(|c| {
                    key_vals
                        .iter()
                        .find(|(i, _)| i == c)
                        .map(|(_, v)| v.clone())
                })
                .collect()
        });
        let pk_text = pk_text.or(field_pk);
        let pk: Option<String> = match pk_text {
            Some(pk) => {
                self.nk.record(t, key, pk);
                Some(pk.to_string())
            }
            None if key_cols.is_none() => {
                // No natural key: a new row, its id from the column default (as loaddata).
                None
            }
            None => {
                let Some(key) = key else {
                    return Err(at.error(
                        None,
                        "an object without a pk needs every field of its natural key".into(),
                    ));
                };
                let pk = settle(self.nk.pk_for(conn, catalog, t, key)?)
                    .map_err(|p| at.error(None, p))?;
                if row.len() > 1 {
                    row.push(b',');
                }
                push_json_string(&mut row, pk_col.as_bytes());
                row.push(b':');
                row.extend_from_slice(pk.as_bytes());
                Some(pk)
            }
        };
        self.nk.saw(t);
        if let Some(pk) = pk_text {
            if row.len() > 1 {
                row.push(b',');
            }
            push_json_string(&mut row, pk_col.as_bytes());
            row.push(b':');
            row.extend_from_slice(pk.as_bytes());
        }
        row.push(b'}');
        let out = self.out(t)?;
        write_row(out, &row, &at, None)?;
        self.row = row;
        for (name, value, through, owner, target) in m2m {
            let Some(pk) = pk.as_deref() else {
                return Err(at.error(
                    Some(name),
                    "a many-to-many list needs the object's pk or natural key".into(),
                ));
            };
            let targets: Vec<&RawValue> = serde_json::from_str(value.get()).map_err(|_| {
                at.error(
                    Some(name),
                    format!(
                        "a many-to-many field is a list of pks, found {}",
                        value.get()
                    ),
                )
            })?;
            let through_table = &catalog.tables[through];
            let mut resolved: Vec<Box<RawValue>> = Vec::with_capacity(targets.len());
            for target_pk in &targets {
                let v = if target_pk.get().starts_with('[') {
                    let (rt, rcol) = NaturalKeys::referenced(catalog, through_table, &target)
                        .ok_or_else(|| at.error(Some(name), "no foreign key".into()))?;
                    settle(self.nk.resolve(conn, catalog, rt, &rcol, target_pk)?)
                        .map_err(|p| at.error(Some(name), p))?
                } else {
                    target_pk.get().to_string()
                };
                resolved.push(RawValue::from_string(v).expect("JSON"));
            }
            let refs: Vec<&RawValue> = resolved.iter().map(|b| &**b).collect();
            self.record_owner(conn, through, (&owner, &target), pk, &refs)?;
            for target_pk in refs {
                let mut link = Vec::with_capacity(64);
                link.push(b'{');
                push_json_string(&mut link, owner.as_bytes());
                link.push(b':');
                link.extend_from_slice(pk.as_bytes());
                link.push(b',');
                push_json_string(&mut link, target.as_bytes());
                link.push(b':');
                link.extend_from_slice(target_pk.get().as_bytes());
                link.push(b'}');
                let out = self.out(through)?;
                write_row(out, &link, &at, Some(name))?;
            }
        }
        Ok(())
    }

    /// Remembers that `pk`'s links in `through` are replaced by `targets` (only when the table
    /// has rows already).
    fn record_owner(
        &mut self,
        conn: &mut Connection,
        through: usize,
        (owner, target): (&str, &str),
        pk: &str,
        targets: &[&RawValue],
    ) -> Result<()> {
        if !self.links.contains_key(&through) {
            let table = &self.catalog.tables[through];
            let has_rows: bool = conn.query_json(&format!(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM {}) THEN 'true' ELSE 'false' END AS j",
                table.name.sql()
            ))?;
            self.links.insert(
                through,
                Links {
                    through,
                    owner: owner.to_string(),
                    target: target.to_string(),
                    owners: has_rows.then(Vec::new),
                },
            );
        }
        if let Some(owners) = &mut self.links.get_mut(&through).expect("inserted").owners {
            let list: Vec<&str> = targets.iter().map(|t| t.get()).collect();
            owners.push(format!("[{pk},[{}]]", list.join(",")));
        }
        Ok(())
    }

    fn out(&mut self, t: usize) -> Result<&mut TableOut> {
        if !self.outs.contains_key(&t) {
            let n = self.outs.len();
            let path = self.dir.path().join(format!("t{n}.json"));
            let origin_path = self.dir.path().join(format!("t{n}.origin"));
            let create = |p: &Path| {
                File::create(p)
                    .map(|f| BufWriter::with_capacity(256 * 1024, f))
                    .map_err(|e| Error::io(p.display().to_string(), e))
            };
            let mut out = create(&path)?;
            let mut head = vec![b'{'];
            push_json_string(&mut head, self.catalog.tables[t].key.as_bytes());
            head.extend_from_slice(b":[\n");
            out.write_all(&head)
                .map_err(|e| Error::io(path.display().to_string(), e))?;
            let origin = create(&origin_path)?;
            self.outs.insert(
                t,
                TableOut {
                    table: self.catalog.tables[t].name.name.clone(),
                    path,
                    out,
                    rows: 0,
                    origin_path,
                    origin,
                },
            );
        }
        Ok(self.outs.get_mut(&t).expect("inserted"))
    }

    fn finish(self) -> Result<Translated> {
        let mut outs: Vec<TableOut> = self.outs.into_values().collect();
        for o in &mut outs {
            let io = |e| Error::io(o.path.display().to_string(), e);
            o.out.write_all(b"\n]}\n").map_err(io)?;
            o.out.flush().map_err(io)?;
            o.origin.flush().map_err(io)?;
        }
        Ok(Translated {
            outs,
            links: self.links,
            _dir: self.dir,
        })
    }
}

/// Marks the translation for a restart (see `natural`).
const RESTART: &str = "restart the translation";

/// A natural-key answer: the value, a restart (as the sentinel error), or the user's problem.
fn settle(
    r: std::result::Result<Option<String>, natural::Problem>,
) -> std::result::Result<String, String> {
    match r {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(RESTART.to_string()),
        Err(p) => Err(p),
    }
}

/// A foreign-key column given a natural key (a list): the referenced table and column.
fn natural_reference(
    catalog: &Catalog,
    table: &crate::catalog::Table,
    col: &Column,
    value: &RawValue,
) -> Option<(usize, String)> {
    if !value.get().starts_with('[')
        || matches!(
            col.kind,
            ValueKind::Json | ValueKind::Jsonb | ValueKind::Structured
        )
    {
        return None;
    }
    NaturalKeys::referenced(catalog, table, &col.name)
}

fn write_row(out: &mut TableOut, row: &[u8], at: &At<'_>, field: Option<&str>) -> Result<()> {
    let io = |e| Error::io(out.path.display().to_string(), e);
    if out.rows > 0 {
        out.out.write_all(b",\n").map_err(io)?;
    }
    out.out.write_all(row).map_err(io)?;
    out.rows += 1;
    // input, object index, model, pk, field: one line per row, read back only on error.
    writeln!(
        out.origin,
        "{}\t{}\t{}\t{}\t{}",
        at.input,
        at.index,
        at.model,
        at.pk.unwrap_or(""),
        field.unwrap_or("")
    )
    .map_err(|e| Error::io(out.origin_path.display().to_string(), e))
}

/// Writes one Django value as the native fixture value for `col`.
fn push_value(
    out: &mut Vec<u8>,
    col: &Column,
    value: &RawValue,
) -> std::result::Result<(), String> {
    let text = value.get();
    let first = text.as_bytes().first().copied().unwrap_or(b'n');
    match col.kind {
        // BinaryField: base64.
        ValueKind::Bytes if first == b'"' => {
            let s: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| format!("a BinaryField value is base64: {e}"))?;
            let mut hex = String::with_capacity(2 + bytes.len() * 2);
            hex.push_str("\\x");
            for b in bytes {
                hex.push_str(&format!("{b:02x}"));
            }
            push_json_string(out, hex.as_bytes());
        }
        // ArrayField: Django writes the list as JSON inside a string.
        ValueKind::Structured if first == b'"' && col.type_name.ends_with("[]") => {
            let s: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
            let inner: &RawValue = serde_json::from_str(&s)
                .map_err(|e| format!("an ArrayField value is a JSON list in a string: {e}"))?;
            out.extend_from_slice(inner.get().as_bytes());
        }
        // A document that reads like the native wrapper is wrapped, so it loads as itself.
        ValueKind::Json | ValueKind::Jsonb
            if first == b'{' && json_wrapper(text.as_bytes()).is_some() =>
        {
            out.extend_from_slice(b"{\"$json\":");
            out.extend_from_slice(text.as_bytes());
            out.push(b'}');
        }
        ValueKind::Json | ValueKind::Jsonb | ValueKind::Structured => {
            out.extend_from_slice(text.as_bytes())
        }
        _ if first == b'[' => {
            return Err(format!(
                "column {} takes one value, found a list: natural foreign keys are not \
                 supported yet; dump with pks (without --natural-foreign)",
                col.name
            ))
        }
        _ => out.extend_from_slice(text.as_bytes()),
    }
    Ok(())
}

/// Deletes the links of the owners listed that the fixture does not list again, in batches
/// (values bound, never spliced). The ones listed again stay (an upsert finds them unchanged).
fn delete_links(conn: &mut Connection, catalog: &Catalog, links: &Links) -> Result<()> {
    let Some(owners) = &links.owners else {
        return Ok(());
    };
    let table = &catalog.tables[links.through];
    let col = |name: &str| table.column(name).expect("column from the catalog");
    let (owner, target) = (col(&links.owner), col(&links.target));
    for batch in owners.chunks(10_000) {
        let ids = format!("[{}]", batch.join(","));
        let sql = match conn.backend() {
            Backend::Postgres => super::pg::delete_links(table, owner, target),
            Backend::Sqlite => super::sqlite::delete_links(table, owner, target),
        };
        let what = format!("replacing the links in {}", table.key);
        super::bound::execute(conn, &sql, &ids, &what)?;
    }
    Ok(())
}

impl Translated {
    /// Rewrites an error located in a translated file to the Django object it came from.
    fn map_error(&self, e: Error, sources: &[Source]) -> Error {
        if let Error::Database { message, .. } = &e {
            return self.locate_violation(message, sources).unwrap_or(e);
        }
        let Error::Fixture { location, message } = &e else {
            return e;
        };
        let Some(out) = self.outs.iter().find(|o| {
            location
                .file
                .as_deref()
                .is_some_and(|f| Path::new(f) == o.path)
        }) else {
            return e;
        };
        let Some(origin) = location.row.and_then(|r| origin_line(&out.origin_path, r)) else {
            return e;
        };
        let parts: Vec<&str> = origin.splitn(5, '\t').collect();
        let [input, index, model, pk, field] = parts[..] else {
            return e;
        };
        let file = input
            .parse::<usize>()
            .ok()
            .and_then(|i| sources.get(i))
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let field = if field.is_empty() {
            location.column.as_deref().map(|c| {
                // A foreign key's column is `<field>_id`; the field is what the file says.
                c.strip_suffix("_id").unwrap_or(c).to_string()
            })
        } else {
            Some(field.to_string())
        };
        let table = location.table.as_deref().unwrap_or("?");
        Error::DjangoObject {
            location: Box::new(DjangoLocation {
                file,
                line: None,
                column: None,
                object: index.parse().ok(),
                model: Some(model.to_string()),
                pk: (!pk.is_empty()).then(|| pk.to_string()),
                field,
            }),
            message: match &location.column {
                Some(c) => format!("{message} (table {table}, column {c})"),
                None => format!("{message} (table {table})"),
            },
        }
    }
}

impl Translated {
    /// A foreign-key violation found when the deferred constraints were checked (PostgreSQL:
    /// `insert or update on table "t" violates foreign key constraint "c" (Key (col)=(v) is not
    /// present ...)`): the first translated row of `t` with that value, as a Django object.
    fn locate_violation(&self, message: &str, sources: &[Source]) -> Option<Error> {
        let rest = message.split("insert or update on table \"").nth(1)?;
        let table = &rest[..rest.find('"')?];
        let key = message.split("Key (").nth(1)?;
        let (col, rest) = key.split_once(")=(")?;
        let value = &rest[..rest.find(") is not present")?];
        if col.contains(',') {
            return None;
        }
        let out = self.outs.iter().find(|o| o.table == table)?;
        let f = File::open(&out.path).ok()?;
        let mut r = crate::format::reader::FixtureReader::new(BufReader::new(f));
        r.next_table().ok()??;
        let mut row = crate::format::reader::RawRow::default();
        let mut index = 0;
        while r.next_row_into(&mut row).ok()? {
            let fields = row.fields().ok()?;
            if fields
                .iter()
                .any(|(n, v)| n == col && natural::key_text(v.get()) == value)
            {
                let origin = origin_line(&out.origin_path, index)?;
                let parts: Vec<&str> = origin.splitn(5, '\t').collect();
                let [input, object, model, pk, field] = parts[..] else {
                    return None;
                };
                let field = if field.is_empty() {
                    col.strip_suffix("_id").unwrap_or(col).to_string()
                } else {
                    field.to_string()
                };
                return Some(Error::DjangoObject {
                    location: Box::new(DjangoLocation {
                        file: sources.get(input.parse::<usize>().ok()?)?.name.clone(),
                        line: None,
                        column: None,
                        object: object.parse().ok(),
                        model: Some(model.to_string()),
                        pk: (!pk.is_empty()).then(|| pk.to_string()),
                        field: Some(field),
                    }),
                    message: message.to_string(),
                });
            }
            index += 1;
        }
        None
    }
}

fn origin_line(path: &Path, row: usize) -> Option<String> {
    let f = File::open(path).ok()?;
    BufReader::new(f).lines().nth(row)?.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(kind: ValueKind, type_name: &str) -> Column {
        Column {
            name: "c".into(),
            type_name: type_name.into(),
            kind,
            base_type: None,
            nullable: true,
            default: None,
            generated: false,
            identity: None,
        }
    }

    fn conv(kind: ValueKind, type_name: &str, v: &str) -> std::result::Result<String, String> {
        let raw: Box<RawValue> = serde_json::from_str(v).unwrap();
        let mut out = Vec::new();
        push_value(&mut out, &col(kind, type_name), &raw).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn django_values_become_native_ones() {
        assert_eq!(
            conv(ValueKind::Bytes, "bytea", "\"AAH/Ymlu\"").unwrap(),
            r#""\\x0001ff62696e""#
        );
        assert!(conv(ValueKind::Bytes, "bytea", "\"!!\"").is_err());
        assert_eq!(conv(ValueKind::Bytes, "bytea", "null").unwrap(), "null");
        assert_eq!(
            conv(ValueKind::Structured, "integer[]", r#""[\"1\", \"-2\"]""#).unwrap(),
            r#"["1", "-2"]"#
        );
        assert_eq!(
            conv(ValueKind::Jsonb, "jsonb", r#"{"$json": 1}"#).unwrap(),
            r#"{"$json":{"$json": 1}}"#
        );
        assert_eq!(
            conv(ValueKind::Jsonb, "jsonb", r#"{"a": 1}"#).unwrap(),
            r#"{"a": 1}"#
        );
        assert_eq!(
            conv(
                ValueKind::DateTime,
                "timestamp with time zone",
                "\"2024-03-05T14:07:09.123Z\""
            )
            .unwrap(),
            "\"2024-03-05T14:07:09.123Z\""
        );
        assert!(conv(ValueKind::Integer, "bigint", "[\"a\"]")
            .unwrap_err()
            .contains("natural"));
    }
}
