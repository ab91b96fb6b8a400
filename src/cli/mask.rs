//! CLI glue for `dump --mask`: the config file's `[mask]` rules merged with the flags, and the
//! warning when no salt is given.

use dbfixtures::config::Config;
use dbfixtures::mask::MaskOptions;
use dbfixtures::Result;

use super::{DumpArgs, Messages};

/// The masking options of a dump.
pub(super) fn options(config: &Config, a: &DumpArgs) -> Result<MaskOptions> {
    MaskOptions::from_sources(
        &config.mask,
        config.path.as_deref(),
        &a.masks,
        a.mask_salt.clone(),
    )
}

/// After a masked dump without a salt: say that the output is only pseudonymous. (After, so an
/// error in the rules is not preceded by a warning about them.)
pub(super) fn warn_if_unsalted(opts: &MaskOptions, msg: &Messages) {
    if opts.is_active() && !opts.has_salt() {
        msg.say(
            "warning: masking without --mask-salt or DBFIXTURES_MASK_SALT: the built-in public \
             key is used, so anyone can test a guessed original against the output; it is only \
             pseudonymous. Give a secret salt (and keep it out of the repository).",
        );
    }
}
