//! `STAGEHAND_*` environment overrides. A variable names a settings key with its dots and
//! dashes turned into underscores, upper-cased: `STAGEHAND_HTTP_BIND` is `http.bind`,
//! `STAGEHAND_QUEUES_IMAGE_PROCESSING_CONCURRENCY` is `queues.image-processing.concurrency`.
//! Keys are matched against the known ones, so names with underscores are never ambiguous.
//! A list key takes a comma-separated value: `STAGEHAND_REDIS_CLUSTER=redis://a:7000,redis://b:7001`.

use serde_json::Value;

use super::load::ConfigError;

/// Variables that belong to the CLI, not to the settings.
const CLI_VARS: [&str; 2] = ["STAGEHAND_SERVER", "STAGEHAND_CONFIG"];
const PREFIX: &str = "STAGEHAND_";
/// Variables that hold tokens (the CLI's `STAGEHAND_TOKEN`, or ones `http.tokens` names with
/// `token_env`), not settings: names that start `STAGEHAND_TOKEN` or end `_TOKEN` (no
/// setting's does).
const TOKEN_PREFIX: &str = "STAGEHAND_TOKEN";
const TOKEN_SUFFIX: &str = "_TOKEN";

/// What an override sets a key to.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Override {
    /// The variable's text (the schema converts it).
    Text(String),
    /// A list key's items.
    List(Vec<String>),
}

impl From<Override> for config::Value {
    fn from(o: Override) -> config::Value {
        match o {
            Override::Text(t) => t.into(),
            Override::List(items) => items.into(),
        }
    }
}

/// Every leaf key of `value`, dotted, with whether it holds a list.
fn leaf_keys(value: &Value, prefix: &str, out: &mut Vec<(String, bool)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_keys(v, &key, out);
            }
        }
        _ => out.push((prefix.to_string(), value.is_array())),
    }
}

fn env_name(key: &str) -> String {
    let mut name = String::from(PREFIX);
    name.extend(key.chars().map(|c| match c {
        '.' | '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    name
}

/// The `(key, value)` overrides the `STAGEHAND_*` variables among `vars` ask for; a variable
/// that names no known key is an error (a typo would otherwise be silently ignored).
pub(super) fn overrides(
    known: &[Value],
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, Override)>, ConfigError> {
    let mut keys = Vec::new();
    for value in known {
        leaf_keys(value, "", &mut keys);
    }
    let mut out = Vec::new();
    for (name, value) in vars {
        if !name.starts_with(PREFIX)
            || CLI_VARS.contains(&name.as_str())
            || name.starts_with(TOKEN_PREFIX)
            || name.ends_with(TOKEN_SUFFIX)
        {
            continue;
        }
        match keys.iter().find(|(key, _)| env_name(key) == name) {
            Some((key, true)) => {
                let items = value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_string)
                    .collect();
                out.push((key.clone(), Override::List(items)));
            }
            Some((key, false)) => out.push((key.clone(), Override::Text(value))),
            None => {
                return Err(ConfigError::invalid(
                    name,
                    "no settings key matches this variable (STAGEHAND_ + the dotted key with dots and dashes as underscores, e.g. STAGEHAND_HTTP_BIND)",
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_map_to_keys_with_underscores_and_dashes() {
        let known = json!({"http": {"max_body_bytes": 1, "bind": "x"}, "queues": {"image-processing": {"concurrency": 3}}});
        let vars = [
            (
                "STAGEHAND_HTTP_MAX_BODY_BYTES".to_string(),
                "10".to_string(),
            ),
            (
                "STAGEHAND_QUEUES_IMAGE_PROCESSING_CONCURRENCY".to_string(),
                "7".to_string(),
            ),
            ("STAGEHAND_SERVER".to_string(), "http://x".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let got = overrides(&[known], vars).expect("overrides");
        assert_eq!(
            got,
            [
                (
                    "http.max_body_bytes".to_string(),
                    Override::Text("10".to_string())
                ),
                (
                    "queues.image-processing.concurrency".to_string(),
                    Override::Text("7".to_string())
                ),
            ]
        );
    }

    #[test]
    fn a_list_key_takes_comma_separated_items() {
        let known = json!({"redis": {"cluster": []}});
        let vars = [(
            "STAGEHAND_REDIS_CLUSTER".to_string(),
            "redis://a:7000, redis://b:7001,".to_string(),
        )];
        assert_eq!(
            overrides(&[known], vars).expect("overrides"),
            [(
                "redis.cluster".to_string(),
                Override::List(vec!["redis://a:7000".into(), "redis://b:7001".into()])
            )]
        );
    }

    #[test]
    fn an_unknown_variable_is_named() {
        let err = overrides(
            &[json!({"http": {"bind": "x"}})],
            [("STAGEHAND_HTTP_BINDD".into(), "y".into())],
        )
        .expect_err("typo");
        assert!(err.to_string().contains("STAGEHAND_HTTP_BINDD"), "{err}");
    }
}
