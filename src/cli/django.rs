//! CLI glue of the Django format: flags and the config file's `[django]` section merged into
//! [`DjangoOptions`].

use dbfixtures::config::Config;
use dbfixtures::format::django::{parse_model_mapping, DjangoOptions, Format};
use dbfixtures::{Error, Result};

use super::{FixtureFormat, LoadArgs};

pub(super) fn load_options(a: &LoadArgs, config: &Config) -> Result<DjangoOptions> {
    // The config file's names are checked like the flag's, naming the file.
    for (table, model) in &config.django.models {
        parse_model_mapping(&format!("{table}={model}")).map_err(|message| Error::Config {
            path: config.path.clone().unwrap_or_default(),
            message: format!("[django] models: {message}"),
        })?;
    }
    let opts = DjangoOptions {
        format: match a.format {
            FixtureFormat::Auto => Format::Auto,
            FixtureFormat::Django => Format::Django,
            FixtureFormat::Native => Format::Native,
        },
        models: a.django_models.clone(),
        exclude: a.exclude.clone(),
        ignore_nonexistent: a.ignorenonexistent,
    };
    Ok(opts.with_config(&config.django))
}

/// The `--django-model` flags, then the config file's `[django] models` they do not override.
fn dump_models(a: &super::DumpArgs, config: &Config) -> Vec<(String, String)> {
    let mut models = a.django_models.clone();
    for (table, model) in &config.django.models {
        if !models.iter().any(|(t, _)| t == table) {
            models.push((table.clone(), model.clone()));
        }
    }
    models
}

/// `dump --plan --format django`: the plan's tables must all be models, as the dump checks.
pub(super) fn check_plan(
    conn: &mut dbfixtures::Connection,
    a: &super::DumpArgs,
    config: &Config,
    plan: &dbfixtures::subset::Plan,
) -> Result<()> {
    let dj = dbfixtures::format::django::dump::DjangoDumpOptions {
        models: dump_models(a, config),
        jsonl: false,
    };
    let tables: Vec<String> = plan.tables.iter().map(|t| t.table.clone()).collect();
    dbfixtures::format::django::dump::check_models(conn, &dj, &tables)
}

/// `dump --format django`.
pub(super) fn dump(
    conn: &mut dbfixtures::Connection,
    a: super::DumpArgs,
    opts: &dbfixtures::dump::DumpOptions,
    config: &Config,
    msg: &super::Messages,
) -> Result<super::Outcome> {
    let models = dump_models(&a, config);
    if a.gzip
        || a.output
            .as_ref()
            .is_some_and(|p| p.to_string_lossy().ends_with('/') || p.is_dir())
    {
        return Err(Error::Invalid(
            "--format django writes one file (or stdout), not a directory".into(),
        ));
    }
    let dj = dbfixtures::format::django::dump::DjangoDumpOptions {
        models,
        jsonl: false,
    };
    let bars = super::term::Bars::for_stderr(msg.quiet);
    let progress: &dyn dbfixtures::Progress = match &bars {
        Some(b) => b,
        None => &dbfixtures::NoProgress,
    };
    let started = std::time::Instant::now();
    let mut stdout = std::io::stdout().lock();
    let summary = dbfixtures::format::django::dump::dump(
        conn,
        opts,
        &dj,
        a.output.as_deref(),
        &mut stdout,
        progress,
    )?;
    let target = a
        .output
        .as_ref()
        .map_or("stdout".to_string(), |p| p.display().to_string());
    msg.say(format!(
        "Dumped {} from {} to {target} ({}) in {:.2}s.",
        super::term::count(summary.rows, "Django object"),
        super::term::count(summary.tables, "table"),
        super::human_bytes(summary.bytes),
        started.elapsed().as_secs_f64()
    ));
    super::mask::warn_if_unsalted(&opts.mask, msg);
    Ok(super::Outcome::Ok)
}
