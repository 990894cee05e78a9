//! The seed's cache-invalidation message.

use serde::{Deserialize, Serialize};

/// What changed in the cache, as the seed's cache-invalidation message names it: some keys, a
/// glob pattern, or a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invalidation {
    /// Keys to drop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// A glob pattern of keys to drop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// A tag whose keys to drop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `true` when the shared store already holds the change and only memory tiers need to
    /// drop their copies (what a two-tier write announces); absent or `false`, the receiver
    /// deletes from the store too (what the seed's handler does).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub memory_only: bool,
}

impl Invalidation {
    pub(crate) fn keys(keys: Vec<String>) -> Invalidation {
        Invalidation {
            keys,
            pattern: None,
            tag: None,
            memory_only: true,
        }
    }
}

impl Invalidation {
    /// Whether it names exactly one of keys (a non-empty list), a pattern or a tag.
    pub fn is_well_formed(&self) -> bool {
        usize::from(!self.keys.is_empty())
            + usize::from(self.pattern.is_some())
            + usize::from(self.tag.is_some())
            == 1
    }
}
