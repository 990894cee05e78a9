//! The seed's message envelope: `{message, metadata: {timestamp, published_by, ...}}`, plus
//! a message id and the publishing node in the metadata.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// What travels on a channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T = Box<RawValue>> {
    /// The message itself.
    pub message: T,
    /// Who sent it, when, and its id. Optional when reading, so a bare `{"message": ...}`
    /// published by another program is accepted.
    #[serde(default)]
    pub metadata: Metadata,
}

/// An envelope's metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// A unique id per published message (empty when the publisher gave none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// When it was published, RFC 3339 in UTC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timestamp: String,
    /// The publishing application (the seed's `publishedBy`).
    #[serde(
        default,
        alias = "publishedBy",
        skip_serializing_if = "String::is_empty"
    )]
    pub published_by: String,
    /// The publishing process, so that a process can skip its own messages.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Anything else the publisher added.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Metadata {
    /// Fresh metadata for a message published now by `node` of `published_by`.
    pub fn now(published_by: &str, node: &str) -> Metadata {
        Metadata {
            id: new_id(),
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            published_by: published_by.to_string(),
            node: node.to_string(),
            extra: Map::new(),
        }
    }
}

/// A random 128-bit id in hex.
pub fn new_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl<T: serde::de::DeserializeOwned> Envelope<T> {
    /// Reads an envelope; the reason if `payload` is not one.
    pub fn parse(payload: &str) -> Result<Envelope<T>, String> {
        serde_json::from_str(payload).map_err(|e| format!("not a message envelope: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_envelope_and_a_bare_one_both_read() {
        let seed = r#"{"message":{"keys":["a"]},"metadata":{"timestamp":"2026-01-01T00:00:00Z","publishedBy":"fashion-wallet-api"}}"#;
        let env: Envelope<Value> = Envelope::parse(seed).expect("the seed's envelope");
        assert_eq!(env.metadata.published_by, "fashion-wallet-api");
        assert_eq!(env.message["keys"][0], "a");
        let bare: Envelope<Value> = Envelope::parse(r#"{"message": 1}"#).expect("bare");
        assert_eq!(bare.metadata, Metadata::default());
        assert!(Envelope::<Value>::parse(r#"{"keys": ["a"]}"#).is_err());
    }

    #[test]
    fn metadata_round_trips_with_extra_fields() {
        let mut meta = Metadata::now("stagehand", "node-1");
        meta.extra.insert("trace".into(), Value::from("t1"));
        let text = serde_json::to_string(&Envelope {
            message: 5,
            metadata: meta.clone(),
        })
        .expect("json");
        let back: Envelope<u32> = Envelope::parse(&text).expect("parse");
        assert_eq!(back.metadata, meta);
        assert_eq!(meta.id.len(), 32);
    }
}
