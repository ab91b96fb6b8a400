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
