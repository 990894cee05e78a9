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
    /// The file or an override does not fit the schema, told with its quoted values hidden
    /// (they may hold a token).
    #[error("config: {0}")]
    Redacted(String),
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
/// (pass `std::env::vars()`), and validates them. An error that would quote a token (a
/// syntax error on its line, a token of the wrong type) is told without the quote.
pub fn load(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    load_unredacted(file, vars).map_err(|err| match err {
        ConfigError::Load(e) if e.to_string().to_ascii_lowercase().contains("token") => {
            ConfigError::Redacted(without_quotes(&e.to_string()))
        }
        other => other,
    })
}

/// `text` with every double-quoted string shown as `"***"` and no quoted source lines (a
/// TOML syntax error quotes the line it stopped on).
fn without_quotes(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().filter(|l| !l.contains('|')) {
        let mut quoted = false;
        for c in line.chars() {
            match (c, quoted) {
                ('"', false) => {
                    out.push_str("\"***");
                    quoted = true;
                }
                ('"', true) => {
                    out.push('"');
                    quoted = false;
                }
                (c, false) => out.push(c),
                (_, true) => {}
            }
        }
        out.push('\n');
    }
    out.trim_end().to_string()
}

fn load_unredacted(
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

#[cfg(test)]
mod tests {
    use super::{load, without_quotes};

    #[test]
    fn a_password_in_the_query_string_is_refused_and_not_echoed() {
        let vars = [(
            "STAGEHAND_REDIS_URL".to_string(),
            "redis://127.0.0.1:6379/0?password=hunter2".to_string(),
        )];
        let err = load(None, vars).expect_err("refused").to_string();
        assert!(err.contains("redis.url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_default_sender_that_is_no_address_is_refused_at_start() {
        for from in ["nonsense", "x@-bad.test"] {
            let vars = [(
                "STAGEHAND_PROCESSORS_EMAIL_FROM".to_string(),
                from.to_string(),
            )];
            let err = load(None, vars).expect_err(from).to_string();
            assert!(err.contains("processors.email.from"), "{err}");
        }
    }

    #[test]
    fn quoted_values_are_hidden() {
        assert_eq!(
            without_quotes("invalid type: string \"s3cret\", expected a sequence"),
            "invalid type: string \"***\", expected a sequence"
        );
        assert_eq!(
            without_quotes(
                "TOML parse error at line 4\n4 | token = \"s3cret\" x\n  |  ^\nexpected newline"
            ),
            "TOML parse error at line 4\nexpected newline"
        );
    }
}
