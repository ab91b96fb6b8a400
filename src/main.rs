//! The `dbfixtures` binary: load `.env`, parse arguments, run, map the outcome to an exit code
//! (0 ok, 1 check failed, 2 error). Everything else lives in the library and in `cli`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // diesel CLI habit: DATABASE_URL may come from a .env file; a real environment variable wins.
    let _ = dotenvy::dotenv();
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(outcome) => outcome.exit_code(),
        // A closed stdout (`dbfixtures dump | head`) is the reader's choice, not an error.
        Err(dbfixtures::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        // Errors are printed once, here, even with --quiet.
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
