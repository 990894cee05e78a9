//! `[processors]`: the built-in processors' settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[processors]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorSettings {
    /// CPU-heavy steps (decoding, resizing, encoding, mesh work) running at once across all
    /// processors; 0 = one per core. Each runs on a blocking thread, never on an actor's.
    pub cpu_threads: usize,
    /// `[processors.email]`
    pub email: EmailSettings,
    /// `[processors.image]`
    pub image: ImageSettings,
    /// `[processors.model]`
    pub model: ModelSettings,
}

/// `[processors.email]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSettings {
    /// The sender when a job gives no `from`.
    pub from: String,
    /// `smtp://host[:port]` or `smtps://host[:port]` (TLS from the first byte); empty: write
    /// each message as a `.eml` file under storage `mail/` instead of sending it.
    pub smtp_url: String,
    /// For `smtp://`: `starttls` (required), `opportunistic` (STARTTLS when offered) or
    /// `none` (plain text, for a local relay).
    pub tls: String,
    /// The environment variable holding the SMTP user name (none set: no authentication).
    pub username_env: String,
    /// The environment variable holding the SMTP password.
    pub password_env: String,
    /// Connections kept open to the SMTP server, at most.
    pub pool_max: u32,
    /// How long an unused pooled connection is kept.
    pub pool_idle_ms: u64,
    /// How long one SMTP command may take.
    pub timeout_ms: u64,
    /// Where templates are read from storage: `{prefix}{name}.subject`, `.txt`, `.html`.
    pub templates_prefix: String,
    /// Templates given in the settings (`[processors.email.templates.NAME]`); these win over
    /// storage.
    pub templates: BTreeMap<String, EmailTemplate>,
    /// All of a message's attachments together, at most, in bytes.
    pub max_attachment_bytes: u64,
}

/// One email template: a subject and at least one body, each a minijinja template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EmailTemplate {
    /// The subject (used when the job gives none).
    pub subject: Option<String>,
    /// The plain-text body.
    pub text: Option<String>,
    /// The HTML body (context values are HTML-escaped).
    pub html: Option<String>,
}

impl Default for EmailSettings {
    fn default() -> Self {
        EmailSettings {
            from: "stagehand <noreply@localhost>".into(),
            smtp_url: String::new(),
            tls: "starttls".into(),
            username_env: "SMTP_USERNAME".into(),
            password_env: "SMTP_PASSWORD".into(),
            pool_max: 10,
            pool_idle_ms: 60_000,
            timeout_ms: 30_000,
            templates_prefix: "templates/email/".into(),
            templates: BTreeMap::new(),
            max_attachment_bytes: 25 * 1024 * 1024,
        }
    }
}

/// `[processors.image]`: limits checked before a pixel is decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageSettings {
    /// The largest input file, in bytes.
    pub max_input_bytes: u64,
    /// The widest image read or made.
    pub max_width: u32,
    /// The tallest image read or made.
    pub max_height: u32,
    /// The most pixels an image read or made may have.
    pub max_pixels: u64,
}

impl Default for ImageSettings {
    fn default() -> Self {
        ImageSettings {
            max_input_bytes: 64 * 1024 * 1024,
            max_width: 16_384,
            max_height: 16_384,
            max_pixels: 40_000_000,
        }
    }
}

/// `[processors.model]`: limits checked before a model's data is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// The largest input (a `.glb`, or a `.gltf` with its buffers and images), in bytes.
    pub max_input_bytes: u64,
    /// The most vertices across all meshes.
    pub max_vertices: u64,
    /// The most accessors, buffer views, meshes, nodes, materials, textures or images each.
    pub max_items: usize,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            max_input_bytes: 256 * 1024 * 1024,
            max_vertices: 10_000_000,
            max_items: 100_000,
        }
    }
}
