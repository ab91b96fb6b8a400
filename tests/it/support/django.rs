//! Real Django for the interop tests: the project under `tests/django` run with a pinned Django.
//!
//! Where Python comes from: `DBFIXTURES_DJANGO_PYTHON` (a Python with Django 5.2 and psycopg),
//! else the venv `target/django-venv`, created on first use with `python3 -m venv` and
//! `pip install -r tests/django/requirements.txt` (PyPI must be reachable the first time). A
//! test FAILS when neither works: never skipped.
//!
//! Databases: the project is migrated once into a template database named after a hash of the
//! project's files (`dbf_django_tpl_<hash>`, kept between runs, rebuilt when the project
//! changes), and every test database is a copy of it.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::{admin_execute, ident, server, DirLock, Out, TestDb};

/// The Django project of the tests.
pub fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/django")
}

/// The Python that runs Django, made ready once per process.
pub fn python() -> &'static Path {
    static PY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PY.get_or_init(find_python) {
        Ok(p) => p,
        Err(e) => panic!("Django is not available for the interop tests: {e}"),
    }
}

fn find_python() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("DBFIXTURES_DJANGO_PYTHON") {
        let p = PathBuf::from(p);
        check_django(&p)?;
        return Ok(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let venv = target.join("django-venv");
    let py = venv.join("bin/python");
    let _lock = DirLock::acquire(target.join("django-venv.lock"))?;
    if check_django(&py).is_ok() {
        return Ok(py);
    }
    let run = |c: &mut Command, what: &str| -> Result<(), String> {
        let out = c.output().map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv target/django-venv",
    )?;
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "-r"])
            .arg(project_dir().join("requirements.txt")),
        "pip install -r tests/django/requirements.txt",
    )?;
    check_django(&py)?;
    Ok(py)
}

fn check_django(py: &Path) -> Result<(), String> {
    let out = Command::new(py)
        .args(["-c", "import django, psycopg; print(django.get_version())"])
        .output()
        .map_err(|e| format!("{}: {e}", py.display()))?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && v.starts_with("5.2") {
        Ok(())
    } else {
        Err(format!(
            "{} has no Django 5.2 with psycopg ({v}{})",
            py.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `manage.py ARGS` on `db`, in the project directory.
pub fn manage(db: &TestDb, args: &[&str]) -> Out {
    manage_on(&db.url(), args)
}

/// [`manage`], asserting it succeeded.
pub fn manage_ok(db: &TestDb, args: &[&str]) -> Out {
    let out = manage(db, args);
    assert_eq!(
        out.code, 0,
        "manage.py {args:?} failed:\n{}{}",
        out.stdout, out.stderr
    );
    out
}

fn manage_on(url: &str, args: &[&str]) -> Out {
    let u = url::Url::parse(url).expect("test URL parses");
    let out = Command::new(python())
        .arg("manage.py")
        .args(args)
        .current_dir(project_dir())
        .env("DJ_DB", u.path().trim_start_matches('/'))
        .env("DJ_HOST", u.host_str().unwrap_or("127.0.0.1"))
        .env("DJ_PORT", u.port().unwrap_or(5432).to_string())
        .env(
            "DJ_USER",
            if u.username().is_empty() {
                "postgres"
            } else {
                u.username()
            },
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run manage.py");
    Out::from(out)
}

/// A new database holding the migrated Django project (content types and permissions included).
pub fn migrated_db(name: &str) -> TestDb {
    let template = template();
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let db = format!(
        "dbf_dj_{}_{}_{}",
        name.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(24)
            .collect::<String>()
            .to_lowercase(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    // CREATE DATABASE ... TEMPLATE refuses while another copy is being made from it.
    static CREATING: Mutex<()> = Mutex::new(());
    let _guard = CREATING.lock().unwrap_or_else(|p| p.into_inner());
    admin_execute(
        &server().admin_url,
        &format!(
            "CREATE DATABASE {} TEMPLATE {}",
            ident(&db),
            ident(template)
        ),
    )
    .unwrap_or_else(|e| panic!("cannot create {db} from {template}: {e}"));
    TestDb {
        url: server().url_for(&db),
        name: db,
        conn: Mutex::new(None),
    }
}

fn template() -> &'static str {
    static TEMPLATE: OnceLock<Result<String, String>> = OnceLock::new();
    match TEMPLATE.get_or_init(make_template) {
        Ok(t) => t,
        Err(e) => panic!("cannot prepare the Django template database: {e}"),
    }
}

/// Files whose content decides the schema.
fn project_hash() -> u64 {
    let mut files = Vec::new();
    let mut stack = vec![project_dir()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && p.file_name().is_some_and(|n| n != "__pycache__") {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "py" || x == "txt") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut h = DefaultHasher::new();
    for f in files {
        f.strip_prefix(project_dir()).ok().hash(&mut h);
        fs::read(&f).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

fn make_template() -> Result<String, String> {
    let name = format!("dbf_django_tpl_{:016x}", project_hash());
    let admin = &server().admin_url;
    let lock_dir = std::env::temp_dir().join(format!("{name}.lock"));
    let _lock = DirLock::acquire(lock_dir)?;
    let mut conn = {
        use diesel::Connection as _;
        diesel::pg::PgConnection::establish(admin).map_err(|e| e.to_string())?
    };
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let exists: Vec<N> = {
        use diesel::RunQueryDsl;
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM pg_database WHERE datname = '{name}'"
        ))
        .load(&mut conn)
        .map_err(|e| e.to_string())?
    };
    if exists.first().is_some_and(|r| r.n > 0) {
        return Ok(name);
    }
    // Built under another name and renamed, so a killed run never leaves a half-made template.
    let building = format!("{name}_b{}", std::process::id());
    admin_execute(
        admin,
        &format!("DROP DATABASE IF EXISTS {}", ident(&building)),
    )?;
    admin_execute(
        admin,
        &format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'",
            ident(&building)
        ),
    )?;
    let out = manage_on(&server().url_for(&building), &["migrate", "-v0"]);
    if out.code != 0 {
        let _ = admin_execute(
            admin,
            &format!("DROP DATABASE IF EXISTS {}", ident(&building)),
        );
        return Err(format!(
            "manage.py migrate failed:\n{}{}",
            out.stdout, out.stderr
        ));
    }
    admin_execute(
        admin,
        &format!(
            "ALTER DATABASE {} RENAME TO {}",
            ident(&building),
            ident(&name)
        ),
    )?;
    Ok(name)
}

/// Every table's rows as sorted text, for comparing two databases. Through tables of
/// auto-created many-to-many fields are compared without their `id` (Django inserts links in
/// set order, so their ids are arbitrary).
pub fn table_contents(db: &TestDb) -> Vec<(String, String)> {
    let tables = db
        .query_scalar(
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
             WHERE schemaname = 'public' AND tablename <> 'django_migrations'",
        )
        .unwrap_or_default();
    tables
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            let through = THROUGH_TABLES.contains(&t);
            let row = if through {
                "(row_to_json(x)::jsonb - 'id')::text"
            } else {
                "row_to_json(x)::jsonb::text"
            };
            let rows = db
                .query_scalar(&format!(
                    "SELECT coalesce(string_agg({row}, E'\\n' ORDER BY {row}), '') FROM {} AS x",
                    ident(t)
                ))
                .unwrap_or_default();
            (t.to_string(), rows)
        })
        .collect()
}

/// The project's auto-created many-to-many through tables.
pub const THROUGH_TABLES: &[&str] = &[
    "auth_group_permissions",
    "auth_user_groups",
    "auth_user_user_permissions",
    "shop_author_friends",
    "shop_document_followers",
    "shop_document_tags",
];
