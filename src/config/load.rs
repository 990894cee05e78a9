//! Reading settings: defaults, then the file, then `STAGEHAND_*` overrides, then validation.

use std::path::Path;

use config::{Config, File, FileFormat};

use super::Settings;
use super::env::overrides;

/// Why the settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an override could not be read or does not fit the schema.
    #[error("config: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is out of range or inconsistent; `key` names it.
    #[error("config: {key}: {problem}")]
    Invalid {
        /// The dotted key, as in the TOML file.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Loads settings from the defaults, `file` (TOML) if given, and the environment `vars`
/// (pass `std::env::vars()`), and validates them.
pub fn load(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let defaults = Config::try_from(&Settings::default())?;
    let mut builder = Config::builder().add_source(defaults);
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::invalid(
                "--config",
                format!("file {} does not exist", path.display()),
            ));
        }
        builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
    }
    // The keys an override may name are those of the defaults (as serde writes them: the
    // config crate drops empty lists) and of the file.
    let known: serde_json::Value = builder.clone().build()?.try_deserialize()?;
    let defaults = serde_json::to_value(Settings::default())
        .map_err(|e| ConfigError::invalid("defaults", e.to_string()))?;
    for (key, value) in overrides(&[defaults, known], vars)? {
        builder = builder.set_override(key, value)?;
    }
    let settings: Settings = builder.build()?.try_deserialize()?;
    settings.validate()?;
    Ok(settings)
}
