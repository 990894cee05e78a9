//! An email job's data, and the MIME message built from it (lettre's builder).

use std::collections::BTreeMap;

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use serde::Deserialize;
use serde_json::Value;
use stagehand_core::ProcessError;

/// One address or several.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(untagged)]
pub enum Addresses {
    /// None.
    #[default]
    None,
    /// One address (`"Ann <ann@example.com>"` or `"ann@example.com"`).
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Addresses {
    fn list(&self) -> &[String] {
        match self {
            Addresses::None => &[],
            Addresses::One(one) => std::slice::from_ref(one),
            Addresses::Many(many) => many,
        }
    }
}

/// A file from storage to attach.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentSpec {
    /// Its storage key.
    pub key: String,
    /// The name the recipient sees; default: the key's last part.
    #[serde(default)]
    pub filename: Option<String>,
    /// Its MIME type; default: from the file name's extension.
    #[serde(default)]
    pub content_type: Option<String>,
    /// A named storage (`storage.buckets`); default: the default storage.
    #[serde(default)]
    pub bucket: Option<String>,
}

/// An `email` job's data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailJob {
    /// Recipients.
    #[serde(default)]
    pub to: Addresses,
    /// Copied recipients.
    #[serde(default)]
    pub cc: Addresses,
    /// Hidden recipients (in the envelope, never in the headers).
    #[serde(default)]
    pub bcc: Addresses,
    /// Where replies go.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// The sender; default `processors.email.from`.
    #[serde(default)]
    pub from: Option<String>,
    /// The subject; may come from the template instead.
    #[serde(default)]
    pub subject: Option<String>,
    /// A plain-text body.
    #[serde(default)]
    pub text: Option<String>,
    /// An HTML body.
    #[serde(default)]
    pub html: Option<String>,
    /// A template to render instead of `text` and `html`.
    #[serde(default)]
    pub template: Option<String>,
    /// The template's context: an object.
    #[serde(default)]
    pub context: Option<Value>,
    /// Files from storage.
    #[serde(default)]
    pub attachments: Vec<AttachmentSpec>,
    /// More headers (`X-Campaign`, `List-Unsubscribe`, ...).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The user it is for (set by notifications; logged, not sent).
    #[serde(default)]
    pub user_id: Option<String>,
}

/// The bodies and subject, rendered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Content {
    /// The subject.
    pub subject: String,
    /// The plain-text body.
    pub text: Option<String>,
    /// The HTML body.
    pub html: Option<String>,
}

/// An attachment read from storage.
#[derive(Debug, Clone)]
pub struct LoadedAttachment {
    /// The name the recipient sees.
    pub filename: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Headers a job may not set: the builder sets them, or they shape the message.
const RESERVED_HEADERS: [&str; 13] = [
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "message-id",
    "date",
    "sender",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
];

fn bad(message: impl Into<String>) -> ProcessError {
    ProcessError::unrecoverable(message)
}

fn mailbox(field: &str, text: &str) -> Result<Mailbox, ProcessError> {
    if text.contains(['\r', '\n']) {
        return Err(bad(format!(
            "{field}: an address may not hold a line break"
        )));
    }
    let mailbox = text
        .parse::<Mailbox>()
        .map_err(|e| bad(format!("{field}: '{text}' is not an email address: {e}")))?;
    ascii_domain(mailbox)
        .map_err(|e| bad(format!("{field}: '{text}' is not an email address: {e}")))
}

/// The mailbox with an internationalized domain in its ASCII form (`bücher.example` becomes
/// `xn--bcher-kva.example`), which every server takes: only a non-ASCII local part then needs
/// a server with SMTPUTF8. A domain already in that form (an `xn--` label) is checked the
/// same way, so a label that is no valid punycode is refused.
fn ascii_domain(mailbox: Mailbox) -> Result<Mailbox, String> {
    let domain = mailbox.email.domain();
    let encoded = |label: &str| {
        label
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
    };
    if domain.is_ascii() && !domain.split('.').any(encoded) {
        return Ok(mailbox);
    }
    // The crate's error says only "Errors": say what was wrong.
    let ascii = idna::domain_to_ascii(domain).map_err(|_| {
        format!("its domain '{domain}' is not a valid internationalized domain name (IDNA)")
    })?;
    let email = lettre::Address::new(mailbox.email.user(), ascii).map_err(|e| e.to_string())?;
    Ok(Mailbox::new(mailbox.name, email))
}

fn mailboxes(field: &str, list: &Addresses) -> Result<Vec<Mailbox>, ProcessError> {
    list.list().iter().map(|a| mailbox(field, a)).collect()
}

/// The recipients in the envelope (to, cc, bcc), without repeats.
pub fn recipients(job: &EmailJob) -> Result<Vec<Mailbox>, ProcessError> {
    let mut all = mailboxes("to", &job.to)?;
    all.extend(mailboxes("cc", &job.cc)?);
    all.extend(mailboxes("bcc", &job.bcc)?);
    let mut seen = std::collections::HashSet::new();
    all.retain(|m| seen.insert(m.email.to_string().to_ascii_lowercase()));
    if all.is_empty() {
        return Err(bad("no recipient: give to, cc or bcc"));
    }
    Ok(all)
}

/// A `Message-ID` that derives from the job (queue and id), the same on every attempt, so a
/// message sent twice (at-least-once delivery) is recognisable downstream.
pub fn message_id(queue: &str, job_id: &str, from: &Mailbox) -> String {
    let mut local = String::new();
    for b in job_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') {
            local.push(b as char);
        } else {
            local.push_str(&format!("={b:02X}"));
        }
    }
    format!("<{local}.{queue}.stagehand@{}>", from.email.domain())
}

/// Checks the headers a job adds: valid names, none the builder owns, no line breaks.
fn extra_headers(headers: &BTreeMap<String, String>) -> Result<Vec<HeaderValue>, ProcessError> {
    headers
        .iter()
        .map(|(name, value)| {
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(bad(format!(
                    "headers: '{name}' is set from the job's fields, not from headers"
                )));
            }
            let valid_name =
                !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
            if !valid_name {
                return Err(bad(format!(
                    "headers: {name:?} is not a header name (printable ASCII, no spaces or colons)"
                )));
            }
            if value.contains(['\r', '\n']) {
                return Err(bad(format!(
                    "headers: the value of '{name}' holds a line break"
                )));
            }
            let header = HeaderName::new_from_ascii(name.clone())
                .map_err(|_| bad(format!("headers: '{name}' is not a header name")))?;
            Ok(HeaderValue::new(header, value.clone()))
        })
        .collect()
}

/// A MIME type from a file name's extension, for the common kinds; else binary.
pub fn guess_type(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "csv" => "text/csv",
        "txt" => "text/plain",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "jsonl" => "application/jsonl",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "glb" => "model/gltf-binary",
        "gltf" => "model/gltf+json",
        _ => "application/octet-stream",
    }
}

/// The parts of what to send, checked.
pub struct Draft<'a> {
    /// The job.
    pub job: &'a EmailJob,
    /// Its sender.
    pub from: Mailbox,
    /// Rendered content.
    pub content: Content,
    /// Attachments.
    pub attachments: Vec<LoadedAttachment>,
    /// The `Message-ID`.
    pub message_id: String,
}

/// The sender: the job's `from`, or the configured one.
pub fn sender(job: &EmailJob, default: &str) -> Result<Mailbox, ProcessError> {
    match &job.from {
        Some(from) => mailbox("from", from),
        None => mailbox("processors.email.from", default),
    }
}

/// Builds the MIME message: text and HTML as alternatives, attachments mixed in.
pub fn build(draft: Draft<'_>) -> Result<Message, ProcessError> {
    let job = draft.job;
    let mut builder = Message::builder()
        .from(draft.from)
        .subject(draft.content.subject.clone())
        .message_id(Some(draft.message_id));
    for to in mailboxes("to", &job.to)? {
        builder = builder.to(to);
    }
    for cc in mailboxes("cc", &job.cc)? {
        builder = builder.cc(cc);
    }
    for bcc in mailboxes("bcc", &job.bcc)? {
        builder = builder.bcc(bcc);
    }
    if let Some(reply_to) = &job.reply_to {
        builder = builder.reply_to(mailbox("reply_to", reply_to)?);
    }
    for header in extra_headers(&job.headers)? {
        builder = builder.raw_header(header);
    }
    let body = match (draft.content.text, draft.content.html) {
        (Some(text), Some(html)) => Body::Multi(MultiPart::alternative_plain_html(text, html)),
        (Some(text), None) => Body::Single(SinglePart::plain(text)),
        (None, Some(html)) => Body::Single(SinglePart::html(html)),
        (None, None) => return Err(bad("no body: give text, html or a template")),
    };
    let message = if draft.attachments.is_empty() {
        match body {
            Body::Single(part) => builder.singlepart(part),
            Body::Multi(part) => builder.multipart(part),
        }
    } else {
        let mut mixed = match body {
            Body::Single(part) => MultiPart::mixed().singlepart(part),
            Body::Multi(part) => MultiPart::mixed().multipart(part),
        };
        for file in draft.attachments {
            let content_type = ContentType::parse(&file.content_type).map_err(|e| {
                bad(format!(
                    "attachment '{}': content type '{}': {e}",
                    file.filename, file.content_type
                ))
            })?;
            mixed = mixed.singlepart(Attachment::new(file.filename).body(file.bytes, content_type));
        }
        builder.multipart(mixed)
    };
    message.map_err(|e| bad(format!("the message cannot be built: {e}")))
}

/// The longest line RFC 5322 allows, and the length it asks lines to keep under.
const MAX_LINE: usize = 998;
const FOLD_AT: usize = 78;

/// Folds the message's header lines longer than 78 characters at spaces (RFC 5322 2.2.3):
/// lettre writes a long address list or subject on one line, which servers refuse past 998.
/// A header with a run of more than 998 characters and no space cannot be folded: an error.
pub fn fold_headers(message: &[u8]) -> Result<Vec<u8>, ProcessError> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |p| p + 2);
    let (head, body) = message.split_at(end);
    let mut out = Vec::with_capacity(message.len() + 64);
    for line in head.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\r\n").unwrap_or(line);
        fold_line(text, &mut out)?;
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(body);
    Ok(out)
}

fn fold_line(mut line: &[u8], out: &mut Vec<u8>) -> Result<(), ProcessError> {
    // Never fold within the header's name.
    let start = line.iter().position(|&b| b == b':').map_or(0, |p| p + 1);
    let mut first = true;
    while line.len() > FOLD_AT {
        let from = if first { start + 1 } else { 1 };
        let cut = line[..FOLD_AT.min(line.len())]
            .iter()
            .rposition(|&b| b == b' ')
            .filter(|&p| p > from)
            .or_else(|| {
                line.iter()
                    .skip(from + 1)
                    .position(|&b| b == b' ')
                    .map(|p| p + from + 1)
            });
        let Some(cut) = cut else { break };
        out.extend_from_slice(&line[..cut]);
        out.extend_from_slice(b"\r\n");
        line = &line[cut..]; // the space starts the continuation line
        first = false;
    }
    if line.len() > MAX_LINE {
        let name = String::from_utf8_lossy(&line[..start.min(40)]).to_string();
        return Err(bad(format!(
            "a header ({name}) has a run of more than {MAX_LINE} characters without a space"
        )));
    }
    out.extend_from_slice(line);
    Ok(())
}

enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(value: serde_json::Value) -> EmailJob {
        serde_json::from_value(value).expect("job")
    }

    #[test]
    fn an_internationalized_domain_is_sent_in_its_ascii_form() {
        let job = job(serde_json::json!({
            "to": "Ann Bücher <ann@Bücher.example>",
            "cc": ["bo@xn--bcher-kva.example", "chloé@bücher.example"],
            "subject": "s", "text": "t"
        }));
        let all: Vec<String> = recipients(&job)
            .expect("recipients")
            .iter()
            .map(|m| m.email.to_string())
            .collect();
        // The local part stays as it is (a server needs SMTPUTF8 for the last one).
        assert_eq!(
            all,
            [
                "ann@xn--bcher-kva.example",
                "bo@xn--bcher-kva.example",
                "chloé@xn--bcher-kva.example"
            ]
        );
        let to = mailbox("to", "Ann Bücher <ann@Bücher.example>").expect("mailbox");
        assert_eq!(to.name.as_deref(), Some("Ann Bücher"));
        let err = mailbox("to", "a@b\u{0}ücher.example").expect_err("refused");
        assert!(err.message().contains("not an email address"), "{err}");
        // An ASCII form that is no valid punycode is refused; a valid one is kept (lowercase).
        for bad in [
            "a@xn--zz.test",
            "a@xn--a.test",
            "a@xn--0.test",
            "a@x.xn--zz",
        ] {
            let err = mailbox("to", bad).expect_err(bad);
            assert!(
                err.message()
                    .contains("not a valid internationalized domain"),
                "{bad}: {err}"
            );
        }
        let upper = mailbox("to", "a@XN--BCHER-KVA.TEST").expect("valid");
        assert_eq!(upper.email.to_string(), "a@xn--bcher-kva.test");
    }

    #[test]
    fn the_message_id_is_the_same_for_every_attempt_and_safe() {
        let from: Mailbox = "a@shop.example".parse().expect("mailbox");
        let id = message_id("email", "notification:42 x", &from);
        assert_eq!(id, "<notification=3A42=20x.email.stagehand@shop.example>");
        assert_eq!(id, message_id("email", "notification:42 x", &from));
    }

    #[test]
    fn header_injection_and_owned_headers_are_refused() {
        let err = recipients(&job(serde_json::json!({"to": "a@b.c\r\nBcc: x@y.z"})))
            .expect_err("line break");
        assert!(err.is_unrecoverable());
        let mut headers = BTreeMap::new();
        headers.insert("X-Tag".to_string(), "a\r\nBcc: evil@x.y".to_string());
        assert!(extra_headers(&headers).is_err());
        let mut headers = BTreeMap::new();
        headers.insert("Message-ID".to_string(), "<x@y>".to_string());
        assert!(extra_headers(&headers).is_err());
        let mut headers = BTreeMap::new();
        headers.insert("Bad Name".to_string(), "v".to_string());
        assert!(extra_headers(&headers).is_err());
    }

    #[test]
    fn long_header_lines_are_folded_at_spaces_and_nothing_else_changes() {
        let to: Vec<String> = (0..80).map(|i| format!("user{i}@example.com")).collect();
        let draft = Draft {
            job: &job(serde_json::json!({"to": to})),
            from: "a@shop.example".parse().expect("from"),
            content: Content {
                subject: "word ".repeat(600),
                text: Some("body line that stays as it is ".repeat(5)),
                html: None,
            },
            attachments: Vec::new(),
            message_id: "<x@shop.example>".into(),
        };
        let raw = build(draft).expect("message").formatted();
        let folded = fold_headers(&raw).expect("folds");
        let text = String::from_utf8(folded).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(head.lines().all(|l| l.len() <= 78), "{head}");
        let unfold = |t: &str| t.replace("\r\n ", " ");
        let unfolded = unfold(head);
        let original = String::from_utf8(raw).expect("ascii");
        let (original_head, original_body) = original.split_once("\r\n\r\n").expect("a head");
        assert_eq!(unfold(original_head), unfolded, "folding changed a header");
        assert_eq!(original_body, body);
        assert!(unfolded.contains("user79@example.com"));
        let err = fold_headers(format!("X-Long: {}\r\n\r\nb", "y".repeat(1200)).as_bytes())
            .expect_err("unfoldable");
        assert!(err.message().contains("998"), "{err}");
    }

    #[test]
    fn header_names_with_control_characters_are_refused() {
        for name in ["\tx\r\nFrom", "X-A\r\nBcc", "X A", "X:A", ""] {
            let mut headers = BTreeMap::new();
            headers.insert(name.to_string(), "v".to_string());
            assert!(extra_headers(&headers).is_err(), "{name:?}");
        }
    }

    #[test]
    fn recipients_are_counted_once_and_needed() {
        let all = recipients(&job(serde_json::json!({
            "to": ["a@b.c", "Ann <A@B.C>"], "cc": "d@e.f", "bcc": ["a@b.c", "g@h.i"]
        })))
        .expect("recipients");
        assert_eq!(all.len(), 3);
        assert!(recipients(&job(serde_json::json!({}))).is_err());
    }
}
