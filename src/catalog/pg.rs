//! PostgreSQL catalog introspection: three queries for any number of tables, each returning one
//! JSON document built by the server.
//!
//! What counts as a table: ordinary and partitioned tables (`relkind` r, p) in every schema but
//! the system ones, excluding partitions (their parent stands for them) and tables owned by an
//! extension ([`table_filter`], the one definition both reads use). A sequence "feeds" a column
//! when it is owned by it (serial, identity) or when the column's DEFAULT references it
//! (`nextval('s'::regclass)`, recorded in pg_depend), so shared sequences and sequences without
//! OWNED BY are found too.
//!
//! [`read_for_sequences`] is the sequence path's read: the same table list (names only) and the
//! same sequence query, without columns, keys and foreign keys. Columns are most of the full
//! read's cost (`pg_get_expr` of every default, the type of every column): about 60 ms of 90 for
//! 1,000 tables.

use super::{Catalog, ForeignKey, Sequence, Table, MIGRATIONS_TABLE};
use crate::backend::Connection;
use crate::error::Result;
use crate::format::copy_structured::{Scalar, Shape};

const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

pub(super) fn read(conn: &mut Connection) -> Result<Catalog> {
    let default_schema = default_schema(conn)?;
    let tables: Option<Vec<Table>> = conn.query_json(&tables_sql())?;
    let foreign_keys: Option<Vec<ForeignKey>> = conn.query_json(&foreign_keys_sql())?;
    let sequences: Option<Vec<Sequence>> = conn.query_json(&sequences_sql())?;
    Ok(Catalog {
        default_schema,
        tables: tables.unwrap_or_default(),
        foreign_keys: foreign_keys.unwrap_or_default(),
        sequences: sequences.unwrap_or_default(),
    })
}

/// Every table by name and kind (no columns or keys), no foreign keys, and every sequence as
/// [`read`] has it: what realignment uses (see [`Catalog::read_for_sequences`]).
pub(super) fn read_for_sequences(conn: &mut Connection) -> Result<Catalog> {
    let default_schema = default_schema(conn)?;
    let tables: Option<Vec<Table>> = conn.query_json(&table_names_sql())?;
    let sequences: Option<Vec<Sequence>> = conn.query_json(&sequences_sql())?;
    Ok(Catalog {
        default_schema,
        tables: tables.unwrap_or_default(),
        foreign_keys: Vec::new(),
        sequences: sequences.unwrap_or_default(),
    })
}

fn default_schema(conn: &mut Connection) -> Result<String> {
    let schema: Option<String> = conn.query_json("SELECT to_json(current_schema())::text AS j")?;
    Ok(schema.unwrap_or_else(|| "public".into()))
}

/// The relations that are tables (see the module doc), as a condition on `pg_class c` joined
/// to `pg_namespace n`.
fn table_filter() -> String {
    format!(
        r#"c.relkind IN ('r', 'p') AND NOT c.relispartition AND {USER_SCHEMAS}
     AND c.relname <> '{MIGRATIONS_TABLE}'
     AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                      AND e.objid = c.oid AND e.deptype = 'e')"#
    )
}

/// Joins the base type of the column `a` as `bt`, for [`VALUE_KIND`]: domains are unwrapped (two
/// levels, which covers real schemas).
const BASE_TYPE_JOINS: &str = "JOIN pg_type ty ON ty.oid = a.atttypid
            LEFT JOIN pg_type d1 ON d1.oid = ty.typbasetype AND ty.typtype = 'd'
            LEFT JOIN pg_type d2 ON d2.oid = d1.typbasetype AND d1.typtype = 'd'
            CROSS JOIN LATERAL (SELECT coalesce(d2, d1, ty) AS b) base
            CROSS JOIN LATERAL (SELECT (base.b).*) bt";

/// How the base type `bt` (see [`BASE_TYPE_JOINS`]) is represented in fixtures; see
/// [`super::ValueKind`].
const VALUE_KIND: &str = "CASE \
    WHEN bt.typcategory = 'A' OR bt.typtype = 'c' THEN 'structured' \
    WHEN bt.oid >= 16384 AND EXISTS (SELECT 1 FROM pg_cast pc WHERE pc.castsource = bt.oid \
         AND pc.casttarget = 'json'::regtype) THEN 'structured' \
    WHEN bt.typname IN ('int2', 'int4', 'int8', 'oid') THEN 'integer' \
    WHEN bt.typname IN ('numeric', 'float4', 'float8') THEN 'number' \
    WHEN bt.typname = 'bool' THEN 'boolean' \
    WHEN bt.typname = 'json' THEN 'json' \
    WHEN bt.typname = 'jsonb' THEN 'jsonb' \
    WHEN bt.typname = 'bytea' THEN 'bytes' \
    WHEN bt.typname IN ('timestamp', 'timestamptz') THEN 'date_time' \
    ELSE 'text' END";

fn tables_sql() -> String {
    format!(
        r#"SELECT json_agg(t)::text AS j FROM (
  SELECT json_build_object('schema', n.nspname, 'name', c.relname) AS name,
         c.relkind::text AS kind,
         CASE WHEN c.relkind = 'p' THEN
              coalesce((SELECT sum(greatest(pc.reltuples, 0)) FROM pg_partition_tree(c.oid) pt
                        JOIN pg_class pc ON pc.oid = pt.relid WHERE pt.isleaf), 0)
              ELSE greatest(c.reltuples, 0) END::float8 AS estimated_rows,
         coalesce((SELECT json_agg(json_build_object(
                    'name', a.attname,
                    'type', format_type(a.atttypid, a.atttypmod),
                    'kind', {VALUE_KIND},
                    'base_type', CASE WHEN bt.typtype <> 'd' THEN bt.oid::int8 END,
                    'nullable', NOT a.attnotnull,
                    'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
                    'generated', a.attgenerated <> '',
                    'identity', nullif(a.attidentity::text, ''))
                  ORDER BY a.attnum)
            FROM pg_attribute a
            {BASE_TYPE_JOINS}
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns,
         coalesce((SELECT json_agg(a.attname ORDER BY k.ord)
            FROM pg_constraint pk
            CROSS JOIN LATERAL unnest(pk.conkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = pk.conrelid AND a.attnum = k.attnum
           WHERE pk.conrelid = c.oid AND pk.contype = 'p'), '[]') AS primary_key,
         coalesce((SELECT json_agg(u.cols ORDER BY u.name) FROM (
             SELECT i.indexrelid::regclass::text AS name,
                    (SELECT json_agg(a.attname ORDER BY k.ord)
                       FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) AS cols
               FROM pg_index i
              WHERE i.indrelid = c.oid AND i.indisunique AND NOT i.indisprimary
                AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indisvalid) u), '[]') AS unique
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE {filter}
) t"#,
        filter = table_filter()
    )
}

/// The tables of [`tables_sql`] with their name and kind only.
fn table_names_sql() -> String {
    format!(
        r#"SELECT json_agg(json_build_object(
    'name', json_build_object('schema', n.nspname, 'name', c.relname),
    'kind', c.relkind::text, 'columns', '[]'::json, 'primary_key', '[]'::json))::text AS j
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {}"#,
        table_filter()
    )
}

fn foreign_keys_sql() -> String {
    // conparentid <> 0 marks the per-partition clones of a constraint declared on a parent.
    format!(
        r#"SELECT json_agg(json_build_object(
    'name', con.conname,
    'table', json_build_object('schema', n.nspname, 'name', c.relname),
    'columns', (SELECT json_agg(a.attname ORDER BY k.ord)
                  FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum),
    'ref_table', json_build_object('schema', rn.nspname, 'name', rc.relname),
    'ref_columns', (SELECT json_agg(a.attname ORDER BY k.ord)
                  FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum),
    'deferrable', con.condeferrable)
  ORDER BY n.nspname, c.relname, con.conname)::text AS j
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class rc ON rc.oid = con.confrelid
  JOIN pg_namespace rn ON rn.oid = rc.relnamespace
 WHERE con.contype = 'f' AND con.conparentid = 0 AND {USER_SCHEMAS}"#
    )
}

fn sequences_sql() -> String {
    format!(
        r#"WITH uses AS (
    -- owned by a column: serial (deptype a) and identity (deptype i)
    SELECT d.objid AS seq, d.refobjid AS tbl, d.refobjsubid AS attnum
      FROM pg_depend d
      JOIN pg_sequence s ON s.seqrelid = d.objid
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
    UNION
    -- referenced by a column default: nextval('s'::regclass), with or without OWNED BY
    SELECT d.refobjid, ad.adrelid, ad.adnum
      FROM pg_depend d
      JOIN pg_sequence s ON s.seqrelid = d.refobjid
      JOIN pg_attrdef ad ON ad.oid = d.objid
     WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass
),
-- Grouped once, not a subquery per sequence (that scanned all of `uses` for each sequence).
-- The feeds are the columns of tables (the same filter as the table list). Every sequence with
-- a use has a group (uses of views, partitions or extension tables give it no feed), and the
-- groups drive the join below: the planner cannot estimate them (it guesses one row), and as
-- the inner side of a join it rescanned them once per sequence (90 ms for 1,000).
feeds AS (
    SELECT u.seq, json_agg(json_build_object(
               'table', json_build_object('schema', n.nspname, 'name', c.relname),
               'column', a.attname,
               'kind', {VALUE_KIND}) ORDER BY n.nspname, c.relname, a.attnum)
             FILTER (WHERE {filter}) AS feeds
      FROM uses u
      JOIN pg_class c ON c.oid = u.tbl
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = u.tbl AND a.attnum = u.attnum
      {BASE_TYPE_JOINS}
     GROUP BY u.seq
)
SELECT json_agg(json_build_object(
    'name', json_build_object('schema', sn.nspname, 'name', sc.relname),
    'start', s.seqstart::text, 'increment', s.seqincrement::text,
    'min', s.seqmin::text, 'max', s.seqmax::text, 'cycle', s.seqcycle,
    'feeds', coalesce(f.feeds, '[]'::json))
  ORDER BY sn.nspname, sc.relname)::text AS j
  FROM feeds f
  JOIN pg_sequence s ON s.seqrelid = f.seq
  JOIN pg_class sc ON sc.oid = f.seq
  JOIN pg_namespace sn ON sn.oid = sc.relnamespace"#,
        filter = table_filter()
    )
}

/// One type as [`type_shape`] needs it.
#[derive(serde::Deserialize)]
struct TypeRow {
    typtype: String,
    name: String,
    /// The element type of an array type.
    elem: Option<u32>,
    /// The base type of a domain.
    base: Option<u32>,
    delim: String,
    /// A composite's fields (name, type), dropped ones left out.
    fields: Option<Vec<(String, u32)>>,
    /// An extension type with a cast to json (its JSON form is its own).
    json_cast: bool,
}

/// How values of the type `type_name` (as `format_type` prints it) are written in COPY text,
/// for the structured kinds (arrays, composites, hstore, domains over them); None when the type
/// holds something only the server can convert from JSON (another extension type with its own
/// JSON form).
pub fn type_shape(conn: &mut Connection, type_name: &str) -> Result<Option<Shape>> {
    let oid: u32 = conn.query_json(&format!(
        "SELECT to_json({}::regtype::oid::int8)::text AS j",
        super::quote_literal(type_name)
    ))?;
    shape_of(conn, oid, 0)
}

fn shape_of(conn: &mut Connection, oid: u32, depth: usize) -> Result<Option<Shape>> {
    if depth > 16 {
        return Ok(None);
    }
    let t: TypeRow = conn.query_json(&format!(
        "SELECT json_build_object(
           'typtype', t.typtype, 'name', t.typname, 'delim', t.typdelim,
           'elem', CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 AND t.typlen = -1
                        AND t.typname NOT IN ('int2vector', 'oidvector') THEN t.typelem::int8 END,
           'base', nullif(t.typbasetype, 0)::int8,
           'fields', CASE WHEN t.typtype = 'c' THEN (SELECT json_agg(json_build_array(a.attname, a.atttypid::int8)
                        ORDER BY a.attnum) FROM pg_attribute a
                        WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END,
           'json_cast', t.oid >= 16384 AND EXISTS (SELECT 1 FROM pg_cast c
                        WHERE c.castsource = t.oid AND c.casttarget = 'json'::regtype))::text AS j
         FROM pg_type t WHERE t.oid = {oid}"
    ))?;
    Ok(Some(if let Some(base) = t.base {
        return shape_of(conn, base, depth + 1);
    } else if let Some(elem) = t.elem {
        let Some(elem) = shape_of(conn, elem, depth + 1)? else {
            return Ok(None);
        };
        Shape::Array {
            elem: Box::new(elem),
            delim: t.delim.bytes().next().unwrap_or(b','),
        }
    } else if t.typtype == "c" {
        let mut fields = Vec::new();
        for (name, ty) in t.fields.unwrap_or_default() {
            let Some(s) = shape_of(conn, ty, depth + 1)? else {
                return Ok(None);
            };
            fields.push((name, s));
        }
        Shape::Composite(fields)
    } else if t.name == "hstore" && t.json_cast {
        Shape::Hstore
    } else if t.json_cast {
        return Ok(None);
    } else {
        Shape::Scalar(match t.name.as_str() {
            "bool" => Scalar::Boolean,
            "json" | "jsonb" => Scalar::Json,
            _ => Scalar::Other,
        })
    }))
}
