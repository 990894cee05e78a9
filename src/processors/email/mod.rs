//! The `email` processor: a job's addresses, bodies or template, and attachments from storage
//! become one MIME message (lettre), sent over SMTP with a pool of sessions, or written as an
//! `.eml` file under storage `mail/` when no SMTP server is configured.
//!
//! Progress: 0, 10 once the content is ready (template rendered, attachments read), 90 once
//! the message is built, 100 once it is sent. SMTP 4xx and lost connections retry; 5xx, bad
//! addresses or templates fail at once. The return value lists accepted and refused
//! recipients. The `Message-ID` derives from the job, the same on every attempt.

mod capped;
mod compose;
mod smtp;
mod template;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use lettre::Address;
use lettre::transport::smtp::authentication::Credentials;
use serde_json::{Value, json};
use stagehand_core::{JobContext, ProcessError, Processor};

pub use compose::{AttachmentSpec, EmailJob};
pub use smtp::{Delivery, Refusal, Security, SmtpClient, SmtpConfig};

use super::common::{Resources, file_name, storage_error};
use crate::config::EmailSettings;
use compose::{Content, Draft, LoadedAttachment};

/// Where messages go.
#[derive(Debug)]
enum Outbox {
    /// An SMTP server.
    Smtp(SmtpClient),
    /// `.eml` files in storage.
    Files,
}

/// Sends email jobs.
#[derive(Debug)]
pub struct EmailProcessor {
    resources: Resources,
    outbox: Outbox,
}

/// Reads `smtp_url`, `tls` and the credentials' variables into an SMTP client's config.
pub fn smtp_config(settings: &EmailSettings) -> Result<Option<SmtpConfig>, String> {
    if settings.smtp_url.is_empty() {
        return Ok(None);
    }
    let (scheme, rest) = settings
        .smtp_url
        .split_once("://")
        .ok_or("processors.email.smtp_url: use smtp://host[:port] or smtps://host[:port]")?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("processors.email.smtp_url: port '{port}' is not a number"))?;
            (host.trim_matches(['[', ']']).to_string(), Some(port))
        }
        _ => (rest.to_string(), None),
    };
    if host.is_empty() || host.contains(['/', '@', '?']) {
        return Err(format!(
            "processors.email.smtp_url: '{}' has no plain host (put credentials in username_env and password_env)",
            settings.smtp_url
        ));
    }
    let (security, default_port) = match (scheme, settings.tls.as_str()) {
        ("smtps", _) => (Security::Wrapper, 465),
        ("smtp", "starttls") => (Security::StartTls, 587),
        ("smtp", "opportunistic") => (Security::Opportunistic, 25),
        ("smtp", "none") => (Security::None, 25),
        ("smtp", other) => {
            return Err(format!(
                "processors.email.tls: '{other}' is not starttls, opportunistic or none"
            ));
        }
        (other, _) => {
            return Err(format!(
                "processors.email.smtp_url: scheme '{other}' is not smtp or smtps"
            ));
        }
    };
    let var = |name: &str| {
        (!name.is_empty())
            .then(|| std::env::var(name).ok())
            .flatten()
            .filter(|v| !v.is_empty())
    };
    let credentials = match (var(&settings.username_env), var(&settings.password_env)) {
        (Some(user), Some(password)) => Some(Credentials::new(user, password)),
        (None, None) => None,
        _ => {
            return Err(format!(
                "processors.email: set both {} and {} (or neither)",
                settings.username_env, settings.password_env
            ));
        }
    };
    Ok(Some(SmtpConfig {
        host,
        port: port.unwrap_or(default_port),
        security,
        credentials,
        pool_max: settings.pool_max,
        idle: Duration::from_millis(settings.pool_idle_ms),
        timeout: Duration::from_millis(settings.timeout_ms),
    }))
}

impl EmailProcessor {
    /// An email processor for `resources.settings.email`: over SMTP when `smtp_url` is set,
    /// else to `.eml` files.
    pub fn new(resources: Resources) -> Result<EmailProcessor, String> {
        let outbox = match smtp_config(&resources.settings.email)? {
            Some(config) => Outbox::Smtp(SmtpClient::new(config)),
            None => Outbox::Files,
        };
        Ok(EmailProcessor { resources, outbox })
    }

    async fn content(&self, job: &EmailJob) -> Result<Content, ProcessError> {
        let settings = &self.resources.settings.email;
        match &job.template {
            Some(name) => {
                if job.text.is_some() || job.html.is_some() {
                    return Err(ProcessError::unrecoverable(
                        "give a template or text/html, not both",
                    ));
                }
                let template = template::find(name, settings, &self.resources.storage).await?;
                let (name, subject, context) =
                    (name.clone(), job.subject.clone(), job.context.clone());
                self.resources
                    .cpu
                    .run(move |_| {
                        template::render(&name, &template, subject.as_deref(), context.as_ref())
                    })
                    .await
            }
            None => {
                let subject = job
                    .subject
                    .clone()
                    .ok_or_else(|| ProcessError::unrecoverable("no subject"))?;
                Ok(Content {
                    subject,
                    text: job.text.clone(),
                    html: job.html.clone(),
                })
            }
        }
    }

    async fn attachments(&self, job: &EmailJob) -> Result<Vec<LoadedAttachment>, ProcessError> {
        let mut budget = self.resources.settings.email.max_attachment_bytes;
        let mut out = Vec::with_capacity(job.attachments.len());
        for spec in &job.attachments {
            let storage = self.resources.bucket(spec.bucket.as_deref())?;
            let bytes = storage
                .get_limited(&spec.key, budget)
                .await
                .map_err(|e| match e {
                    crate::storage::StorageError::TooLarge { .. } => ProcessError::unrecoverable(
                        format!(
                            "attachments: '{}' takes the message past processors.email.max_attachment_bytes ({})",
                            spec.key, self.resources.settings.email.max_attachment_bytes
                        ),
                    ),
                    other => storage_error(other),
                })?;
            budget -= bytes.len() as u64;
            let filename = spec
                .filename
                .clone()
                .unwrap_or_else(|| spec.key.rsplit('/').next().unwrap_or(&spec.key).to_string());
            if filename.is_empty() || filename.contains(['\r', '\n', '/', '\\']) {
                return Err(ProcessError::unrecoverable(format!(
                    "attachments: file name '{filename}' is empty or holds a line break or slash"
                )));
            }
            let content_type = spec
                .content_type
                .clone()
                .unwrap_or_else(|| compose::guess_type(&filename).to_string());
            out.push(LoadedAttachment {
                filename,
                content_type,
                bytes: bytes.to_vec(),
            });
        }
        Ok(out)
    }
}

fn address(mailbox: &lettre::message::Mailbox) -> Address {
    mailbox.email.clone()
}

#[async_trait]
impl Processor for EmailProcessor {
    async fn process(&self, ctx: JobContext) -> Result<Value, ProcessError> {
        ctx.progress(0).await;
        let job: EmailJob = ctx.data()?;
        let recipients = compose::recipients(&job)?;
        let from = compose::sender(&job, &self.resources.settings.email.from)?;
        let message_id = compose::message_id(&ctx.job().queue, ctx.id(), &from);
        let content = self.content(&job).await?;
        let attachments = self.attachments(&job).await?;
        ctx.progress(10).await;
        let envelope_from = address(&from);
        let (job, draft_id) = (job, message_id.clone());
        let (job, formatted) = self
            .resources
            .cpu
            .run(move |_| {
                let message = compose::build(Draft {
                    job: &job,
                    from,
                    content,
                    attachments,
                    message_id: draft_id,
                })?;
                Ok((job, compose::fold_headers(&message.formatted())?))
            })
            .await?;
        ctx.progress(90).await;
        let to: Vec<Address> = recipients.iter().map(address).collect();
        let result = match &self.outbox {
            Outbox::Smtp(client) => {
                let delivery = client.send(Some(&envelope_from), &to, &formatted).await?;
                json!({
                    "transport": "smtp",
                    "message_id": message_id,
                    "accepted": delivery.accepted,
                    "refused": delivery.refused,
                    "response": delivery.response,
                })
            }
            Outbox::Files => {
                let key = format!("mail/{}.eml", file_name(ctx.id()));
                self.resources
                    .storage
                    .put(&key, Bytes::from(formatted))
                    .await
                    .map_err(storage_error)?;
                json!({
                    "transport": "file",
                    "key": key,
                    "message_id": message_id,
                    "accepted": to.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "refused": [],
                })
            }
        };
        ctx.progress(100).await;
        tracing::info!(job_id = %ctx.id(), user_id = job.user_id.as_deref().unwrap_or(""), %message_id, "email sent");
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, tls: &str) -> EmailSettings {
        EmailSettings {
            smtp_url: url.into(),
            tls: tls.into(),
            username_env: "STAGEHAND_TEST_NO_SUCH_USER".into(),
            password_env: "STAGEHAND_TEST_NO_SUCH_PASSWORD".into(),
            ..EmailSettings::default()
        }
    }

    #[test]
    fn smtp_urls_are_read_with_their_default_ports() {
        let c = smtp_config(&settings("smtps://mail.example", "starttls"))
            .expect("ok")
            .expect("some");
        assert_eq!(
            (c.host.as_str(), c.port, c.security),
            ("mail.example", 465, Security::Wrapper)
        );
        let c = smtp_config(&settings("smtp://127.0.0.1:2525", "none"))
            .expect("ok")
            .expect("some");
        assert_eq!(
            (c.host.as_str(), c.port, c.security),
            ("127.0.0.1", 2525, Security::None)
        );
        let c = smtp_config(&settings("smtp://[::1]:25", "opportunistic"))
            .expect("ok")
            .expect("some");
        assert_eq!(c.host, "::1");
        assert!(smtp_config(&settings("", "none")).expect("ok").is_none());
        for bad in [
            "mail.example",
            "http://x",
            "smtp://u:p@host",
            "smtp://host:99999",
        ] {
            assert!(smtp_config(&settings(bad, "none")).is_err(), "{bad}");
        }
        assert!(smtp_config(&settings("smtp://h", "maybe")).is_err());
    }
}
