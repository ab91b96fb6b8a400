//! Django interop, proven against real Django 5.2 (see `support::django`): `dumpdata` output
//! loaded by dbfixtures gives the tables `loaddata` gives, and the ORM goes on working after it.

use std::path::{Path, PathBuf};

use crate::support::django::{manage_ok, migrated_db, table_contents};
use crate::support::{dbf, TestDb};

const LEGACY: &str = "legacy_things=shop.legacy";

/// A seeded project database and its `dumpdata` of every app, written to `dir/name`.
fn seeded_dump(dir: &Path, name: &str, extra: &[&str]) -> (TestDb, PathBuf) {
    let src = migrated_db("src");
    manage_ok(&src, &["seed"]);
    let path = dir.join(name);
    let p = path.to_str().unwrap();
    let mut args = vec!["dumpdata", "shop", "auth", "contenttypes", "-o", p];
    args.extend_from_slice(extra);
    manage_ok(&src, &args);
    (src, path)
}

fn load_ok(db: &TestDb, args: &[&str]) -> String {
    let out = dbf(db, args);
    assert_eq!(out.code, 0, "load failed: {}", out.stderr);
    out.stderr
}

/// Table by table, so a difference names its table.
fn assert_same_tables(ours: &TestDb, theirs: &TestDb) {
    let (a, b) = (table_contents(ours), table_contents(theirs));
    assert_eq!(
        a.iter().map(|(t, _)| t).collect::<Vec<_>>(),
        b.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );
    for ((table, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x, y, "table {table} differs");
    }
}

fn count(db: &TestDb, table: &str) -> i64 {
    db.query_scalar(&format!("SELECT count(*) FROM {table}"))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn dumpdata_loads_into_the_tables_loaddata_gives() {
    let dir = tempfile::tempdir().unwrap();
    let (_src, fixture) = seeded_dump(dir.path(), "all.json", &["--indent", "2"]);
    let f = fixture.to_str().unwrap();

    let by_django = migrated_db("loaddata");
    manage_ok(&by_django, &["loaddata", f]);
    let ours = migrated_db("ours");
    load_ok(&ours, &["load", f, "--django-model", LEGACY]);

    // Not vacuous: every kind of row is there.
    for (table, n) in [
        ("shop_document", 2),
        ("shop_document_tags", 3),
        ("shop_author_friends", 4),
        ("shop_restaurant", 2),
        ("shop_pizzaplace", 1),
        ("legacy_things", 1),
        ("auth_user_groups", 1),
        ("shop_note", 2),
    ] {
        assert_eq!(count(&ours, table), n, "{table}");
    }
    assert_same_tables(&ours, &by_django);
    // Value forms survived exactly (Django's dump keeps milliseconds of datetimes).
    assert_eq!(
        ours.query_scalar(
            "SELECT concat_ws('|', created, took, encode(blob, 'hex'), labels::text, \
             scores::text, data->>'$json', price) FROM shop_document \
             WHERE title = 'First'"
        )
        .as_deref(),
        Some("2024-03-05 14:07:09.123+00|-1 days +02:00:00.000005|0001ff62696e|{x,\"y,z\",\"q\\\"uote\"}|{1,-2,3}|1|1234.50")
    );

    // Every sequence is past the data: the ORM creates a row of every model.
    let out = manage_ok(&ours, &["orm_create"]);
    assert!(out.stdout.contains("ok"), "{}", out.stdout);
}

#[test]
fn jsonl_gz_loads_with_the_config_file_naming_models() {
    let dir = tempfile::tempdir().unwrap();
    let (_src, fixture) = seeded_dump(dir.path(), "all.jsonl.gz", &["--format", "jsonl"]);
    let config = dir.path().join("dbf.toml");
    std::fs::write(
        &config,
        "[django]\nmodels = { legacy_things = \"shop.legacy\" }\n",
    )
    .unwrap();
    let ours = migrated_db("jsonl");
    let f = fixture.to_str().unwrap();
    load_ok(&ours, &["load", f, "--config", config.to_str().unwrap()]);
    let by_django = migrated_db("jsonl_dj");
    manage_ok(&by_django, &["loaddata", f]);
    assert_same_tables(&ours, &by_django);
    assert_eq!(count(&ours, "shop_document"), 2);
}

#[test]
fn many_to_many_lists_replace_links_as_loaddata_does() {
    let dir = tempfile::tempdir().unwrap();
    let (_src, fixture) = seeded_dump(dir.path(), "all.json", &[]);
    let f = fixture.to_str().unwrap();
    let by_django = migrated_db("m2m_dj");
    let ours = migrated_db("m2m_ours");
    manage_ok(&by_django, &["loaddata", f]);
    load_ok(&ours, &["load", f, "--django-model", LEGACY]);
    // A link the fixture does not list for an object it lists (document "First" gets tag 2),
    // and a link of an object it does not list (a new document).
    for db in [&by_django, &ours] {
        db.sql(
            "INSERT INTO shop_document_tags (document_id, tag_id) \
             VALUES ('12345678-1234-5678-1234-567812345678', 2); \
             INSERT INTO shop_document (id, title, body, created, price, ratio, big, small, \
               positive, active, labels, slug, site, author_id) \
             VALUES ('00000000-0000-0000-0000-000000000001', 'Extra', '', '2020-01-01T00:00:00Z', 1, 1, 1, 1, 1, \
               true, '{}', 'x', '', 'ada@example.com'); \
             INSERT INTO shop_document_tags (document_id, tag_id) \
             VALUES ('00000000-0000-0000-0000-000000000001', 1);",
        );
    }
    manage_ok(&by_django, &["loaddata", f]);
    let again = load_ok(&ours, &["load", f, "--django-model", LEGACY]);
    assert_same_tables(&ours, &by_django);
    assert_eq!(
        ours.query_scalar(
            "SELECT string_agg(tag_id::text, ',' ORDER BY tag_id) FROM shop_document_tags \
             WHERE document_id = '12345678-1234-5678-1234-567812345678'"
        )
        .as_deref(),
        Some("1,3")
    );
    assert_eq!(
        count(&ours, "shop_document_tags"),
        4,
        "the unlisted document keeps its link"
    );
    assert!(again.contains(", 0 updated"), "{again}");
}

#[test]
fn errors_name_file_object_model_pk_and_field_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = migrated_db("errors");
    let good = r#"{"model": "shop.country", "pk": "FR", "fields": {"name": "France"}},
        {"model": "shop.tag", "pk": 1, "fields": {"name": "red"}}"#;
    // Loads `[good, last]` from `name`, which must fail naming what `want` says (with `{f}` for
    // the file's path).
    let fails = |name: &str, last: &str, want: &[&str]| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("[{good}, {last}]")).unwrap();
        let f = p.to_str().unwrap();
        let out = dbf(&db, &["load", f]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        for w in want {
            let w = w.replace("{f}", f);
            assert!(out.stderr.contains(&w), "expected {w:?} in {}", out.stderr);
        }
    };
    // A value the database rejects: located back in the Django file.
    fails(
        "bad_value.json",
        r#"{"model": "shop.author", "pk": 7, "fields": {"email": "a@b", "name": "n", "country": "FR", "mentor": "seven"}}"#,
        &["{f}, object 2 (shop.author pk=7), field mentor"],
    );
    // A reference to a row that does not exist: found when the deferred constraints are
    // checked, still named by its object.
    fails(
        "bad_reference.json",
        r#"{"model": "shop.author", "pk": 8, "fields": {"email": "c@d", "name": "n", "country": "XX"}}"#,
        &[
            "{f}, object 2 (shop.author pk=8), field country: ",
            "(country_id)=(XX)",
        ],
    );
    // A field the model does not have.
    fails(
        "bad_field.json",
        r#"{"model": "shop.tag", "pk": 2, "fields": {"nmae": "x"}}"#,
        &["{f}, object 2 (shop.tag pk=2), field nmae"],
    );
    // A model without a table: names the flag that fixes it.
    fails(
        "bad_model.json",
        r#"{"model": "shop.legacy", "pk": 1, "fields": {"code": "x"}}"#,
        &[
            "object 2 (shop.legacy pk=1)",
            "--django-model TABLE=shop.legacy",
        ],
    );
    // Broken JSON: the position.
    fails("bad_json.json", "\n {\"model\": ", &["{f}:3:"]);

    // Nothing of the good objects landed.
    assert_eq!(count(&db, "shop_country"), 0);
    assert_eq!(count(&db, "shop_tag"), 0);
}

#[test]
fn exclude_and_ignorenonexistent_as_loaddata() {
    let dir = tempfile::tempdir().unwrap();
    let db = migrated_db("exclude");
    let p = dir.path().join("f.json");
    std::fs::write(
        &p,
        r#"[{"model": "shop.country", "pk": "FR", "fields": {"name": "France", "gone": 1}},
            {"model": "shop.ghost", "pk": 1, "fields": {}},
            {"model": "shop.tag", "pk": 1, "fields": {"name": "red"}},
            {"model": "shop.legacy", "pk": 1, "fields": {"code": "x"}}]"#,
    )
    .unwrap();
    let f = p.to_str().unwrap();
    let out = dbf(&db, &["load", f, "--django-model", LEGACY]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("field gone"), "{}", out.stderr);
    load_ok(
        &db,
        &[
            "load",
            f,
            "-i",
            "--exclude",
            "shop.Tag",
            "--django-model",
            LEGACY,
        ],
    );
    assert_eq!(count(&db, "shop_country"), 1);
    assert_eq!(count(&db, "shop_tag"), 0);
    assert_eq!(count(&db, "legacy_things"), 1);
    load_ok(&db, &["load", f, "-i", "-e", "shop", "--format", "django"]);
}

#[test]
fn natural_key_dumps_load_like_loaddata() {
    let dir = tempfile::tempdir().unwrap();
    let (_src, fixture) = seeded_dump(
        dir.path(),
        "natural.json",
        &["--natural-foreign", "--natural-primary"],
    );
    let f = fixture.to_str().unwrap();
    // Not vacuous: the dump really uses natural keys.
    let text = std::fs::read_to_string(&fixture).unwrap();
    assert!(
        text.contains(r#""content_type": ["auth", "permission"]"#),
        "{}",
        &text[..500]
    );
    assert!(text.contains(r#""model": "auth.user", "fields""#));

    let by_django = migrated_db("natural_dj");
    manage_ok(&by_django, &["loaddata", f]);
    let ours = migrated_db("natural_ours");
    load_ok(&ours, &["load", f, "--django-model", LEGACY]);
    assert_eq!(count(&ours, "auth_user"), 2);
    assert_same_tables(&ours, &by_django);
    // Loading it again matches every object by its natural key: nothing new.
    let again = load_ok(&ours, &["load", f, "--django-model", LEGACY]);
    assert!(again.contains("(0 inserted, 0 updated"), "{again}");
    assert_same_tables(&ours, &by_django);
    let out = manage_ok(&ours, &["orm_create"]);
    assert!(out.stdout.contains("ok"), "{}", out.stdout);
}

#[test]
fn unknown_natural_keys_are_errors_naming_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let db = migrated_db("natural_err");
    let p = dir.path().join("f.json");
    std::fs::write(
        &p,
        r#"[{"model": "shop.note", "pk": 1, "fields": {"content_type": ["shop", "nosuch"], "object_id": "1", "text": "x"}},
            {"model": "shop.profile", "pk": 1, "fields": {"author": ["x"], "bio": ""}}]"#,
    )
    .unwrap();
    let out = dbf(&db, &["load", p.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("object 0 (shop.note pk=1), field content_type")
            && out
                .stderr
                .contains(r#"no row of django_content_type has the natural key ["shop","nosuch"]"#),
        "{}",
        out.stderr
    );
    std::fs::write(
        &p,
        r#"[{"model": "shop.membership", "pk": 1, "fields": {"club": ["Chess"], "author": 1, "since": "2020-01-01"}}]"#,
    )
    .unwrap();
    let out = dbf(&db, &["load", p.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("field club") && out.stderr.contains("shop_club has no natural key"),
        "{}",
        out.stderr
    );
}

/// The objects of a Django fixture by (model, pk), m2m lists sorted (Django orders them by the
/// target model's ordering, dbfixtures by link).
fn objects(text: &str) -> std::collections::BTreeMap<(String, String), serde_json::Value> {
    let list: Vec<serde_json::Value> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).unwrap()
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    list.into_iter()
        .map(|mut o| {
            if let Some(fields) = o["fields"].as_object_mut() {
                for v in fields.values_mut() {
                    if let Some(a) = v.as_array_mut() {
                        if a.iter().all(|x| x.is_number() || x.is_string()) {
                            a.sort_by_key(|x| x.to_string());
                        }
                    }
                }
            }
            let key = (
                o["model"].as_str().unwrap().to_string(),
                o["pk"].to_string(),
            );
            (key, o)
        })
        .collect()
}

#[test]
fn dump_format_django_writes_what_dumpdata_writes_and_loaddata_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let (src, theirs) = seeded_dump(dir.path(), "theirs.json", &[]);
    let ours = dir.path().join("ours.json");
    let out = dbf(
        &src,
        &[
            "dump",
            "--format",
            "django",
            "--django-model",
            LEGACY,
            "-o",
            ours.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (a, b) = (
        objects(&std::fs::read_to_string(&ours).unwrap()),
        objects(&std::fs::read_to_string(&theirs).unwrap()),
    );
    assert!(a.len() > 100, "{}", a.len());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert_eq!(v, &b[k], "object {k:?}");
    }

    // loaddata reads it (JSON, pretty, and JSON Lines gzipped) back to the same tables.
    let by_django = migrated_db("dump_theirs");
    manage_ok(&by_django, &["loaddata", theirs.to_str().unwrap()]);
    for (name, extra) in [
        ("ours.json", &[][..]),
        ("pretty.json", &["--pretty"][..]),
        ("ours.jsonl.gz", &[][..]),
    ] {
        let p = dir.path().join(name);
        let mut args = vec![
            "dump",
            "--format",
            "django",
            "--django-model",
            LEGACY,
            "-o",
            p.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = dbf(&src, &args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let back = migrated_db("dump_back");
        manage_ok(&back, &["loaddata", p.to_str().unwrap()]);
        assert_same_tables(&back, &by_django);
    }
    let pretty = std::fs::read_to_string(dir.path().join("pretty.json")).unwrap();
    assert!(
        pretty.starts_with("[\n{\n  \"model\": "),
        "{}",
        &pretty[..80]
    );

    // A table that is no model is an error naming it.
    let out = dbf(&src, &["dump", "--format", "django"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("legacy_things") && out.stderr.contains("--django-model"),
        "{}",
        out.stderr
    );
}

#[test]
fn every_compression_loaddata_accepts_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (src, plain) = seeded_dump(dir.path(), "plain.json", &[]);
    let by_django = migrated_db("compressed_dj");
    manage_ok(&by_django, &["loaddata", plain.to_str().unwrap()]);
    // dumpdata writes no zip: make one as loaddata reads it (one file inside).
    let zipped = dir.path().join("all.json.zip");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zipped).unwrap());
        z.start_file("all.json", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut z, &std::fs::read(&plain).unwrap()).unwrap();
        z.finish().unwrap();
    }
    let check = manage_ok(&by_django, &["loaddata", zipped.to_str().unwrap()]);
    assert!(check.stdout.contains("Installed"), "{}", check.stdout);
    let ours = migrated_db("zip");
    load_ok(
        &ours,
        &["load", zipped.to_str().unwrap(), "--django-model", LEGACY],
    );
    assert_same_tables(&ours, &by_django);
    for ext in ["json.bz2", "json.xz", "json.lzma", "jsonl.bz2"] {
        let p = dir.path().join(format!("all.{ext}"));
        let mut args = vec![
            "dumpdata",
            "shop",
            "auth",
            "contenttypes",
            "-o",
            p.to_str().unwrap(),
        ];
        if ext.starts_with("jsonl") {
            args.extend(["--format", "jsonl"]);
        }
        manage_ok(&src, &args);
        let ours = migrated_db("compressed");
        load_ok(
            &ours,
            &["load", p.to_str().unwrap(), "--django-model", LEGACY],
        );
        assert_eq!(count(&ours, "shop_document"), 2, "{ext}");
        assert_same_tables(&ours, &by_django);
    }
}

/// The same translation on SQLite (no Django there: its schema written as Django creates it).
#[test]
fn sqlite_loads_django_fixtures_with_links_and_natural_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.sqlite3");
    let url = format!("sqlite://{}", path.display());
    let mut conn =
        dbfixtures::Connection::open(&dbfixtures::DatabaseUrl::Sqlite(path.clone()), true).unwrap();
    conn.execute(
        "CREATE TABLE django_content_type (id integer PRIMARY KEY AUTOINCREMENT, \
           app_label varchar(100) NOT NULL, model varchar(100) NOT NULL, UNIQUE (app_label, model)); \
         CREATE TABLE shop_tag (id integer PRIMARY KEY AUTOINCREMENT, name varchar(50) NOT NULL UNIQUE); \
         CREATE TABLE shop_post (id integer PRIMARY KEY AUTOINCREMENT, title text NOT NULL, \
           kind_id integer NULL REFERENCES django_content_type (id) DEFERRABLE INITIALLY DEFERRED); \
         CREATE TABLE shop_post_tags (id integer PRIMARY KEY AUTOINCREMENT, \
           post_id integer NOT NULL REFERENCES shop_post (id) DEFERRABLE INITIALLY DEFERRED, \
           tag_id integer NOT NULL REFERENCES shop_tag (id) DEFERRABLE INITIALLY DEFERRED, \
           UNIQUE (post_id, tag_id)); \
         INSERT INTO django_content_type (app_label, model) VALUES ('shop', 'post');",
    )
    .unwrap();
    let fixture = dir.path().join("f.json");
    let write = |tags: &str| {
        std::fs::write(
            &fixture,
            format!(
                r#"[{{"model": "shop.tag", "fields": {{"name": "red"}}}},
                    {{"model": "shop.tag", "fields": {{"name": "blue"}}}},
                    {{"model": "shop.post", "pk": 1, "fields": {{"title": "a", "kind": ["shop", "post"], "tags": {tags}}}}}]"#
            ),
        )
        .unwrap();
    };
    let load = || {
        let out = crate::support::Out::from(
            crate::support::cmd()
                .args(["load", fixture.to_str().unwrap(), "--database-url", &url])
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stderr
    };
    let links = |conn: &mut dbfixtures::Connection| -> String {
        conn.query_json(
            "SELECT json_group_array(tag_id) AS j FROM (SELECT tag_id FROM shop_post_tags ORDER BY tag_id)",
        )
        .map(|v: serde_json::Value| v.to_string())
        .unwrap()
    };
    write(r#"[["red"], ["blue"]]"#);
    load();
    assert_eq!(links(&mut conn), "[1,2]");
    let kind: serde_json::Value = conn
        .query_json("SELECT kind_id AS j FROM shop_post")
        .unwrap();
    assert_eq!(kind, serde_json::json!(1));
    // Tags matched by their natural key again (no new rows); the post's links replaced.
    write(r#"[["blue"]]"#);
    let again = load();
    assert_eq!(links(&mut conn), "[2]");
    let tags: i64 = conn
        .query_json("SELECT count(*) AS j FROM shop_tag")
        .unwrap();
    assert_eq!(tags, 2, "{again}");
}

#[test]
fn migrate_runs_before_a_django_fixture_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo_test.sqlite3");
    let fixture = dir.path().join("users.json");
    std::fs::write(
        &fixture,
        r#"[{"model": "demo.user", "pk": 5, "fields": {"email": "e@x", "full_name": "E", "is_admin": true}}]"#,
    )
    .unwrap();
    let out = crate::support::Out::from(
        crate::support::cmd()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["load", "--migrate", "--django-model", "users=demo.user"])
            .arg(&fixture)
            .arg("--database-url")
            .arg(format!("sqlite://{}", db.display()))
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("applied migration"), "{}", out.stderr);
    let mut conn =
        dbfixtures::Connection::open(&dbfixtures::DatabaseUrl::Sqlite(db), false).unwrap();
    let email: String = conn
        .query_json("SELECT json_quote(email) AS j FROM users WHERE id = 5")
        .unwrap();
    assert_eq!(email, "e@x");
}
