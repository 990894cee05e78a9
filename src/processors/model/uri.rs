//! Where a glTF's buffers and images live: `data:` URIs are decoded, relative URIs resolve
//! against the input key's folder in the same storage, anything else is refused.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

/// What a URI names.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Resolved {
    /// The bytes of a `data:` URI.
    Data(Vec<u8>),
    /// A storage key next to the input.
    Key(String),
}

const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Resolves `uri` (of a buffer or image in the model stored under `input_key`); `max` bounds
/// the bytes a `data:` URI may decode to.
pub(super) fn resolve(uri: &str, input_key: &str, max: u64) -> Result<Resolved, String> {
    if let Some(rest) = uri.strip_prefix("data:") {
        let (header, payload) = rest
            .split_once(',')
            .ok_or_else(|| "a data: URI without a ',' before its data".to_string())?;
        if !header.ends_with(";base64") {
            return Err("a data: URI that is not base64 (only ';base64,' is supported)".into());
        }
        if (payload.len() as u64 / 4).saturating_mul(3) > max {
            return Err(format!("a data: URI larger than the {max} bytes allowed"));
        }
        return BASE64
            .decode(payload.trim_end())
            .map(Resolved::Data)
            .map_err(|e| format!("a data: URI whose base64 does not decode: {e}"));
    }
    let scheme_end = uri.find([':', '/', '?', '#']);
    if scheme_end.is_some_and(|i| uri.as_bytes()[i] == b':') {
        return Err(format!(
            "'{uri}' is an absolute URL; only relative paths and data: URIs are read"
        ));
    }
    if uri.starts_with('/') || uri.contains('\\') {
        return Err(format!(
            "'{uri}' is an absolute path; only paths relative to the model are read"
        ));
    }
    if uri.contains(['?', '#']) {
        return Err(format!("'{uri}' has a query or fragment"));
    }
    let decoded = percent_decode(uri).ok_or_else(|| format!("'{uri}' is not a valid URI"))?;
    let mut parts: Vec<&str> = input_key.split('/').collect();
    parts.pop(); // the input's own name
    let folder = parts.len();
    for segment in decoded.split('/') {
        match segment {
            "" => return Err(format!("'{uri}' has an empty path segment")),
            "." => {}
            ".." if parts.len() > folder => {
                parts.pop();
            }
            ".." => return Err(format!("'{uri}' escapes the model's folder")),
            s => parts.push(s),
        }
    }
    Ok(Resolved::Key(parts.join("/")))
}

/// `%XX` sequences as bytes; `None` for a broken sequence or text that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.contains('\0')).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uri: &str) -> Result<Resolved, String> {
        resolve(uri, "shop/coat/coat.gltf", 1 << 20)
    }

    #[test]
    fn relative_paths_resolve_in_the_models_folder() {
        assert_eq!(
            key("coat.bin"),
            Ok(Resolved::Key("shop/coat/coat.bin".into()))
        );
        assert_eq!(
            key("./tex/a%20b.png"),
            Ok(Resolved::Key("shop/coat/tex/a b.png".into()))
        );
        assert_eq!(
            key("tex/../coat.bin"),
            Ok(Resolved::Key("shop/coat/coat.bin".into()))
        );
        assert_eq!(
            resolve("a.bin", "top.gltf", 10),
            Ok(Resolved::Key("a.bin".into()))
        );
    }

    #[test]
    fn escapes_urls_and_absolute_paths_are_refused() {
        for (uri, says) in [
            ("../secret.bin", "escapes"),
            ("tex/../../x.bin", "escapes"),
            ("%2E%2E/x.bin", "escapes"),
            ("https://evil.example/x.bin", "absolute URL"),
            ("file:///etc/passwd", "absolute URL"),
            ("/etc/passwd", "absolute path"),
            ("a\\b.bin", "absolute path"),
            ("a//b.bin", "empty path segment"),
            ("a.bin?x=1", "query"),
            ("a%ZZ.bin", "not a valid URI"),
        ] {
            let err = key(uri).expect_err(uri);
            assert!(err.contains(says), "{uri}: {err}");
        }
    }

    #[test]
    fn data_uris_decode_within_their_bound() {
        assert_eq!(
            key("data:application/octet-stream;base64,AAEC"),
            Ok(Resolved::Data(vec![0, 1, 2]))
        );
        assert_eq!(key("data:;base64,AAE"), Ok(Resolved::Data(vec![0, 1])));
        assert!(key("data:text/plain,hello").is_err());
        assert!(resolve("data:;base64,AAAAAAAA", "m.gltf", 3).is_err());
        assert!(key("data:;base64,@@@@").is_err());
    }
}
