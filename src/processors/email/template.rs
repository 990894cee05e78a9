//! Email templates: found in the settings or in storage, rendered with minijinja. The HTML
//! body auto-escapes what the context brings in; subject and text are left as they are.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value;
use stagehand_core::ProcessError;

use super::compose::Content;
use crate::config::{EmailSettings, EmailTemplate};
use crate::processors::common::storage_error;
use crate::storage::{Storage, StorageError};

/// Template work allowed per render (minijinja's fuel): enough for any real email, not for a
/// loop that never ends.
const FUEL: u64 = 2_000_000;
/// The largest template file read from storage.
const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;
/// The longest output a render may make.
const MAX_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

/// Checks a template name: letters, digits, `_`, `-`, `.` and `/` between parts, no `..`.
fn check_name(name: &str) -> Result<(), ProcessError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if ok {
        Ok(())
    } else {
        Err(ProcessError::unrecoverable(format!(
            "template name '{name}': use letters, digits, '_', '-', '.' and '/' between parts"
        )))
    }
}

/// Finds template `name`: in the settings, else in storage under `templates_prefix`.
pub async fn find(
    name: &str,
    settings: &EmailSettings,
    storage: &Storage,
) -> Result<EmailTemplate, ProcessError> {
    check_name(name)?;
    if let Some(template) = settings.templates.get(name) {
        return Ok(template.clone());
    }
    let read = |ext: &'static str| {
        let key = format!("{}{name}.{ext}", settings.templates_prefix);
        async move {
            match storage.get_limited(&key, MAX_TEMPLATE_BYTES).await {
                Ok(bytes) => String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| {
                    ProcessError::unrecoverable(format!("template '{key}' is not UTF-8"))
                }),
                Err(StorageError::NotFound(_)) => Ok(None),
                Err(err) => Err(storage_error(err)),
            }
        }
    };
    let template = EmailTemplate {
        subject: read("subject").await?,
        text: read("txt").await?,
        html: read("html").await?,
    };
    if template.text.is_none() && template.html.is_none() {
        return Err(ProcessError::unrecoverable(format!(
            "no template '{name}': none in processors.email.templates, and no {prefix}{name}.txt or {prefix}{name}.html in storage",
            prefix = settings.templates_prefix
        )));
    }
    Ok(template)
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

fn render_one(
    env: &Environment<'_>,
    name: &str,
    source: &str,
    context: &minijinja::Value,
) -> Result<String, ProcessError> {
    let out = env
        .render_named_str(name, source, context)
        .map_err(|e| ProcessError::unrecoverable(format!("template {name}: {e:#}")))?;
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(ProcessError::unrecoverable(format!(
            "template {name} rendered {} bytes, more than {MAX_OUTPUT_BYTES}",
            out.len()
        )));
    }
    Ok(out)
}

/// Renders `template` with `context` (an object, or nothing). A subject given in the job wins
/// over the template's. CPU work: run it off the actor's thread.
pub fn render(
    name: &str,
    template: &EmailTemplate,
    subject: Option<&str>,
    context: Option<&Value>,
) -> Result<Content, ProcessError> {
    let context = match context {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(object @ Value::Object(_)) => object.clone(),
        Some(_) => {
            return Err(ProcessError::unrecoverable(
                "context must be an object (its keys are the template's variables)",
            ));
        }
    };
    let context = minijinja::Value::from(minijinja::value::Serde(context));
    let env = environment();
    let subject = match (subject, &template.subject) {
        (Some(given), _) => given.to_string(),
        (None, Some(source)) => render_one(&env, &format!("{name}.subject"), source, &context)?
            .trim()
            .to_string(),
        (None, None) => {
            return Err(ProcessError::unrecoverable(format!(
                "no subject: the job gives none and template '{name}' has none"
            )));
        }
    };
    let text = template
        .text
        .as_deref()
        .map(|source| render_one(&env, &format!("{name}.txt"), source, &context))
        .transpose()?;
    let html = template
        .html
        .as_deref()
        .map(|source| render_one(&env, &format!("{name}.html"), source, &context))
        .transpose()?;
    Ok(Content {
        subject,
        text,
        html,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(html: &str) -> EmailTemplate {
        EmailTemplate {
            subject: Some("Hello {{ name }}".into()),
            text: Some("Hi {{ name }}".into()),
            html: Some(html.into()),
        }
    }

    #[test]
    fn html_escapes_the_context_and_text_does_not() {
        let out = render(
            "welcome",
            &template("<p>Hi {{ name }}</p>"),
            None,
            Some(&json!({"name": "<b>Ann</b> & co"})),
        )
        .expect("render");
        assert_eq!(out.subject, "Hello <b>Ann</b> & co");
        assert_eq!(out.text.as_deref(), Some("Hi <b>Ann</b> & co"));
        assert_eq!(
            out.html.as_deref(),
            Some("<p>Hi &lt;b&gt;Ann&lt;&#x2f;b&gt; &amp; co</p>")
        );
    }

    #[test]
    fn a_missing_variable_an_endless_template_and_a_bad_name_fail_for_good() {
        let err = render(
            "t",
            &template("{{ nope }}"),
            Some("s"),
            Some(&json!({"name": 1})),
        )
        .expect_err("undefined");
        assert!(
            err.is_unrecoverable() && err.message().contains("t.html"),
            "{err}"
        );
        let endless =
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
        let err = render(
            "t",
            &template(endless),
            Some("s"),
            Some(&json!({"name": 1})),
        )
        .expect_err("fuel");
        assert!(err.is_unrecoverable(), "{err}");
        assert!(check_name("../secrets").is_err());
        assert!(check_name("a//b").is_err());
        assert!(check_name("orders/shipped").is_ok());
    }
}
