//! CLI glue for `dump --mask`: the config file's `[mask]` rules merged with the flags, and the
//! warning when no salt is given.

use dbfixtures::config::Config;
use dbfixtures::mask::MaskOptions;
use dbfixtures::Result;

use super::{DumpArgs, Messages};

/// The masking options of a dump; warns on stderr when masking without a salt.
pub(super) fn options(config: &Config, a: &DumpArgs, msg: &Messages) -> Result<MaskOptions> {
    let opts = MaskOptions::from_sources(
        &config.mask,
        config.path.as_deref(),
        &a.masks,
        a.mask_salt.clone(),
    )?;
    if opts.is_active() && !opts.has_salt() {
        msg.say(
            "warning: masking without --mask-salt or DBFIXTURES_MASK_SALT: the built-in public \
             key is used, so anyone can test a guessed original against the output; it is only \
             pseudonymous. Give a secret salt (and keep it out of the repository).",
        );
    }
    Ok(opts)
}
