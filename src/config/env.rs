//! `STAGEHAND_*` environment overrides. A variable names a settings key with its dots and
//! dashes turned into underscores, upper-cased: `STAGEHAND_HTTP_BIND` is `http.bind`,
//! `STAGEHAND_QUEUES_IMAGE_PROCESSING_CONCURRENCY` is `queues.image-processing.concurrency`.
//! Keys are matched against the known ones, so names with underscores are never ambiguous.

use serde_json::Value;

use super::load::ConfigError;

/// Variables that belong to the CLI, not to the settings.
const CLI_VARS: [&str; 2] = ["STAGEHAND_SERVER", "STAGEHAND_CONFIG"];
const PREFIX: &str = "STAGEHAND_";

/// Every leaf key of `value`, dotted.
fn leaf_keys(value: &Value, prefix: &str, out: &mut Vec<String>) {
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
        _ => out.push(prefix.to_string()),
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
    known: &Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut keys = Vec::new();
    leaf_keys(known, "", &mut keys);
    let mut out = Vec::new();
    for (name, value) in vars {
        if !name.starts_with(PREFIX) || CLI_VARS.contains(&name.as_str()) {
            continue;
        }
        match keys.iter().find(|key| env_name(key) == name) {
            Some(key) => out.push((key.clone(), value)),
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
        let got = overrides(&known, vars).expect("overrides");
        assert_eq!(
            got,
            [
                ("http.max_body_bytes".to_string(), "10".to_string()),
                (
                    "queues.image-processing.concurrency".to_string(),
                    "7".to_string()
                ),
            ]
        );
    }

    #[test]
    fn an_unknown_variable_is_named() {
        let err = overrides(
            &json!({"http": {"bind": "x"}}),
            [("STAGEHAND_HTTP_BINDD".into(), "y".into())],
        )
        .expect_err("typo");
        assert!(err.to_string().contains("STAGEHAND_HTTP_BINDD"), "{err}");
    }
}
