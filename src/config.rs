//! `config`: the optional TOML file that keeps long-lived options (subset rules, masks, Django
//! model names) in version control.
//!
//! Where it comes from: `--config PATH` (or `DBFIXTURES_CONFIG`), else `dbfixtures.toml` in the
//! current directory when it exists, else nothing. A named file that is missing is an error; the
//! implicit one is optional.
//!
//! Invariants:
//! - Unknown sections and keys are errors naming the file, so a typo never silently drops a rule.
//! - The file only supplies defaults: every command-line flag overrides or extends it (the
//!   merging is done by the command that uses a section, documented there).
//! - Each section is owned by the module it configures: `[subset]` by `subset`, `[mask]` by
//!   `mask`, `[django]` by `format::django`. This file only parses.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The file name looked for in the current directory when no `--config` is given.
pub const DEFAULT_FILE: &str = "dbfixtures.toml";

/// The whole configuration file. Every section is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file this came from (None for the built-in empty configuration).
    #[serde(skip)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub subset: SubsetSection,
    #[serde(default)]
    pub mask: MaskSection,
    #[serde(default)]
    pub django: DjangoSection,
}

impl Config {
    /// Reads `explicit` when given (it must exist), else `dbfixtures.toml` in the current
    /// directory when it exists, else returns the empty configuration.
    pub fn discover(explicit: Option<&Path>) -> Result<Config> {
        match explicit {
            Some(p) => Config::read(p),
            None => {
                let p = Path::new(DEFAULT_FILE);
                if p.is_file() {
                    Config::read(p)
                } else {
                    Ok(Config::default())
                }
            }
        }
    }

    /// Reads and parses one file.
    pub fn read(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut config = Config::parse(&text).map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message,
        })?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses TOML text; the error is the parser's message (with line and column).
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }
}

// ---- [subset] (owned by `subset`) -------------------------------------------------------------

/// `[subset]`: the rules of a subset dump (see `subset`), the same as `dump`'s flags:
///
/// ```toml
/// [subset]
/// where = ["customers: id = 42", "sales.orders: created_at > now() - interval '7 days'"]
/// full = ["countries", "lookup_*"]
/// no-children = false
/// max-rows = 100000        # 0: no limit
/// ```
///
/// Merging (done by the `dump` command): `--where` flags replace the file's `where` list,
/// `--full` adds to `full`, `--no-children` and `--max-rows` override.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SubsetSection {
    /// `TABLE: CONDITION` seeds; any makes every `dump` a subset.
    #[serde(default, rename = "where")]
    pub seeds: Vec<String>,
    /// Tables (patterns) included whole.
    #[serde(default)]
    pub full: Vec<String>,
    /// Seeds and parents only.
    #[serde(default, alias = "no_children")]
    pub no_children: bool,
    /// The row guard (0: no limit).
    #[serde(default, alias = "max_rows")]
    pub max_rows: Option<u64>,
}

// ---- [mask] (owned by `mask`) -----------------------------------------------------------------

/// `[mask]`: masking rules applied on dump (see `mask`), one per line:
/// `"TABLE.COLUMN" = "STRATEGY"` (globs allowed: `"*.email" = "email"`). Keys and strategies
/// are checked by `mask` (with the file named in errors); the salt never lives here.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct MaskSection {
    pub rules: std::collections::BTreeMap<String, String>,
}

// ---- [django] (owned by `format::django`) -----------------------------------------------------

/// `[django]`: Django model names for tables (see `format::django`).
///
/// ```toml
/// [django]
/// models = { legacy_things = "shop.legacy" }   # TABLE = "app_label.model"
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DjangoSection {
    /// Table → `app_label.model`, for models with a custom `db_table` (`--django-model` adds to
    /// and overrides these).
    #[serde(default)]
    pub models: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_is_the_default_config() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_section_is_an_error_naming_it() {
        let e = Config::parse("[subsett]\n").unwrap_err();
        assert!(e.contains("subsett"), "{e}");
    }

    #[test]
    fn mask_section_is_a_table_of_rules() {
        let c = Config::parse("[mask]\n\"users.email\" = \"email\"\n\"*.phone\" = \"phone\"\n")
            .unwrap();
        assert_eq!(c.mask.rules.len(), 2);
        assert_eq!(c.mask.rules["users.email"], "email");
        assert!(Config::parse("[mask]\n\"users.email\" = 3\n").is_err());
    }

    #[test]
    fn read_names_the_file_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dbfixtures.toml");
        std::fs::write(&p, "[nope]\n").unwrap();
        let e = Config::read(&p).unwrap_err().to_string();
        assert!(e.contains("dbfixtures.toml") && e.contains("nope"), "{e}");
    }

    #[test]
    fn subset_section_reads_every_key() {
        let c = Config::parse(
            "[subset]\nwhere = [\"users: id = 1\"]\nfull = [\"lookup_*\"]\n\
             no-children = true\nmax-rows = 10\n",
        )
        .unwrap();
        assert_eq!(c.subset.seeds, vec!["users: id = 1".to_string()]);
        assert_eq!(c.subset.full, vec!["lookup_*".to_string()]);
        assert!(c.subset.no_children);
        assert_eq!(c.subset.max_rows, Some(10));
        let e = Config::parse("[subset]\nwheres = []\n").unwrap_err();
        assert!(e.contains("wheres"), "{e}");
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = Config::discover(Some(Path::new("/nonexistent/dbf.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/dbf.toml"), "{e}");
    }
}
