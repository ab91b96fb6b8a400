//! Command-line behaviour shared by every subcommand: where the database URL comes from, that a
//! password never reaches the output, exit codes, `--version`.

use std::fs;

use crate::support::{cmd, TestDb};

/// A database whose only sequence is behind: `reset-sequences --check` exits 1 and names
/// `<table>_id_seq`, which proves the binary reached this very database.
fn behind_db(table: &str) -> TestDb {
    let db = TestDb::new(table);
    db.sql(&format!(
        "CREATE TABLE {table} (id serial PRIMARY KEY); INSERT INTO {table} VALUES (3);"
    ));
    db
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn database_url_accepted_before_and_after_the_subcommand() {
    let db = behind_db("url_position");
    let url = db.url();
    for args in [
        vec!["--database-url", &url, "sequences"],
        vec!["sequences", "--database-url", &url],
        vec![&format!("--database-url={url}"), "sequences"],
    ] {
        let out = cmd().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("url_position_id_seq"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
    let out = cmd()
        .args(["reset-sequences", "--check", "--database-url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("url_position_id_seq"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn database_url_from_the_environment() {
    let db = behind_db("url_env");
    let out = cmd()
        .env("DATABASE_URL", db.url())
        .args(["reset-sequences", "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("url_env_id_seq"), "{}", stderr(&out));
    cmd()
        .env("DATABASE_URL", db.url())
        .arg("reset-sequences")
        .assert()
        .success();
    assert_eq!(
        db.query_scalar("SELECT nextval('url_env_id_seq')")
            .as_deref(),
        Some("4")
    );
}

#[test]
fn database_url_from_a_dotenv_file_in_the_working_directory() {
    let from_file = behind_db("url_dotenv");
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(".env"),
        format!("# test\nDATABASE_URL={}\n", from_file.url()),
    )
    .unwrap();

    let out = cmd()
        .current_dir(dir.path())
        .arg("sequences")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("url_dotenv_id_seq"),
        "{}",
        stdout(&out)
    );

    // A real environment variable wins over the file.
    let from_env = behind_db("url_env_wins");
    let out = cmd()
        .current_dir(dir.path())
        .env("DATABASE_URL", from_env.url())
        .arg("sequences")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("url_env_wins_id_seq"),
        "{}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains("url_dotenv_id_seq"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn no_database_url_is_an_error_saying_where_to_put_one() {
    let out = cmd().arg("sequences").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: no database URL: pass --database-url, set DATABASE_URL, or put DATABASE_URL in a \
         .env file\n"
    );
}

#[test]
fn password_never_appears_in_output() {
    const URL: &str = "postgres://postgres:S3cretPw@127.0.0.1:1/x";
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(".env"), format!("DATABASE_URL={URL}\n")).unwrap();
    let runs: Vec<(&str, assert_cmd::Command)> = vec![
        ("flag", {
            let mut c = cmd();
            c.args(["--database-url", URL, "reset-sequences"]);
            c
        }),
        ("flag after", {
            let mut c = cmd();
            c.args(["sequences", "--json", "--database-url", URL]);
            c
        }),
        ("env", {
            let mut c = cmd();
            c.env("DATABASE_URL", URL)
                .args(["reset-sequences", "--check", "--verbose"]);
            c
        }),
        (".env", {
            let mut c = cmd();
            c.current_dir(dir.path())
                .args(["reset-sequences", "--dry-run"]);
            c
        }),
        ("query parameter", {
            let mut c = cmd();
            c.args([
                "sequences",
                "--database-url",
                "postgres://postgres@127.0.0.1:1/x?password=S3cretPw",
            ]);
            c
        }),
        ("percent-encoded", {
            let mut c = cmd();
            c.args([
                "sequences",
                "--database-url",
                "postgres://postgres:S3cretPw%21@127.0.0.1:1/x",
            ]);
            c
        }),
        ("keyword/value connection string", {
            let mut c = cmd();
            c.args([
                "sequences",
                "--database-url",
                "host=127.0.0.1 port=1 user=postgres password=S3cretPw dbname=x",
            ]);
            c
        }),
    ];
    for (how, mut c) in runs {
        let out = c.output().unwrap();
        let (so, se) = (stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(2), "{how}: {se}");
        assert!(
            se.starts_with("error: cannot connect to database \"x\" on 127.0.0.1:1: "),
            "{how}: {se}"
        );
        assert!(
            !so.contains("S3cretPw") && !se.contains("S3cretPw"),
            "{how}: {so}{se}"
        );
    }
}

#[test]
fn version() {
    let out = cmd().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        format!("dbfixtures {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn quiet_silences_messages_but_not_errors() {
    let db = behind_db("quiet");
    let out = cmd()
        .args(["reset-sequences", "--quiet", "--database-url", &db.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(
        db.query_scalar("INSERT INTO quiet DEFAULT VALUES RETURNING id")
            .as_deref(),
        Some("4")
    );

    let out = cmd()
        .args([
            "reset-sequences",
            "-q",
            "--table",
            "nope",
            "--database-url",
            &db.url(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: unknown table nope\n");
}
