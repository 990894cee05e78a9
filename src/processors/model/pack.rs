//! Writing a model as one GLB: every buffer view and every image given by URI copied into a
//! single BIN chunk (each piece starting on a 4-byte boundary), the JSON rewritten to point
//! there, everything else in it kept as read.
//!
//! Index data may be replaced (a level of detail's simplified indices): the new indices get
//! a view of their own, and a view left with no accessor by that is dropped.

use std::collections::{BTreeMap, BTreeSet};

use gltf::json::accessor::ComponentType;
use serde_json::{Value, json};

use super::accessors;
use super::document::Model;
use super::glb;

const ELEMENT_ARRAY_BUFFER: u32 = 34963;

/// The media type of an image: the one the JSON gives, else what its bytes say.
fn mime_type(json: &Value, bytes: &[u8]) -> Option<String> {
    if let Some(m) = json["mimeType"].as_str() {
        return Some(m.to_string());
    }
    let sniffed = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "image/webp"
    } else if bytes.starts_with(b"\xABKTX 20\xBB") {
        "image/ktx2"
    } else {
        return None;
    };
    Some(sniffed.into())
}

/// The buffer views each accessor and image reads.
fn view_refs(json: &Value) -> Vec<(String, usize)> {
    let mut refs = Vec::new();
    let as_index = |v: &Value| v.as_u64().and_then(|i| usize::try_from(i).ok());
    for (i, a) in json["accessors"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (path, v) in [
            ("", &a["bufferView"]),
            ("indices", &a["sparse"]["indices"]["bufferView"]),
            ("values", &a["sparse"]["values"]["bufferView"]),
        ] {
            if let Some(v) = as_index(v) {
                refs.push((format!("accessor {i} {path}"), v));
            }
        }
    }
    for (i, image) in json["images"].as_array().into_iter().flatten().enumerate() {
        if let Some(v) = as_index(&image["bufferView"]) {
            refs.push((format!("image {i}"), v));
        }
    }
    refs
}

/// The model as a GLB, with the indices of the accessors in `replaced` swapped for new ones.
pub(super) fn write(
    model: &Model,
    replaced: &BTreeMap<usize, Vec<u32>>,
) -> Result<Vec<u8>, String> {
    let mut json = model.json.clone();
    let before: BTreeSet<usize> = view_refs(&json).into_iter().map(|(_, v)| v).collect();
    let after: BTreeSet<usize> = view_refs(&json)
        .into_iter()
        .filter(|(who, _)| {
            !replaced
                .keys()
                .any(|a| who.starts_with(&format!("accessor {a} ")))
        })
        .map(|(_, v)| v)
        .collect();
    let dropped: BTreeSet<usize> = before.difference(&after).copied().collect();

    let mut bin = Vec::new();
    let mut push = |bytes: &[u8]| -> usize {
        while bin.len() % 4 != 0 {
            bin.push(0);
        }
        let at = bin.len();
        bin.extend_from_slice(bytes);
        at
    };
    let mut views = Vec::new();
    let mut renumber = BTreeMap::new();
    let old_views = json["bufferViews"].as_array().cloned().unwrap_or_default();
    for (i, mut view) in old_views.into_iter().enumerate() {
        if dropped.contains(&i) {
            continue;
        }
        let (buffer, range) = accessors::view_range(model, i)?;
        let at = push(&model.buffers[buffer][range]);
        view["buffer"] = json!(0);
        view["byteOffset"] = json!(at);
        renumber.insert(i, views.len());
        views.push(view);
    }
    let renumbered = |v: &Value| -> Value {
        v.as_u64()
            .and_then(|i| renumber.get(&(i as usize)))
            .map_or(Value::Null, |n| json!(n))
    };
    if let Some(list) = json.get_mut("accessors").and_then(Value::as_array_mut) {
        for (i, a) in list.iter_mut().enumerate() {
            if let Some(indices) = replaced.get(&i) {
                let vertices = indices.iter().max().map_or(0, |m| m + 1);
                let component = if vertices <= 65_535 {
                    ComponentType::U16
                } else {
                    ComponentType::U32
                };
                let bytes = accessors::encode_indices(indices, component)
                    .ok_or_else(|| "indices do not fit their type".to_string())?;
                let at = push(&bytes);
                let obj = a.as_object_mut().ok_or("an accessor is not an object")?;
                for gone in ["byteOffset", "min", "max", "sparse"] {
                    obj.remove(gone);
                }
                obj.insert("bufferView".into(), json!(views.len()));
                obj.insert("count".into(), json!(indices.len()));
                obj.insert("componentType".into(), json!(component.as_gl_enum()));
                views.push(json!({
                    "buffer": 0, "byteOffset": at, "byteLength": bytes.len(), "target": ELEMENT_ARRAY_BUFFER,
                }));
                continue;
            }
            if a.get("bufferView").is_some() {
                a["bufferView"] = renumbered(&a["bufferView"]);
            }
            for part in ["indices", "values"] {
                if a["sparse"][part].get("bufferView").is_some() {
                    a["sparse"][part]["bufferView"] = renumbered(&a["sparse"][part]["bufferView"]);
                }
            }
        }
    }
    if let Some(list) = json.get_mut("images").and_then(Value::as_array_mut) {
        for (i, image) in list.iter_mut().enumerate() {
            if let Some(bytes) = model.images.get(i).and_then(Option::as_ref) {
                let mime = mime_type(image, bytes).ok_or_else(|| {
                    format!("images[{i}]: no mimeType, and its bytes are no known image type")
                })?;
                let at = push(bytes);
                let obj = image.as_object_mut().ok_or("an image is not an object")?;
                obj.remove("uri");
                obj.insert("bufferView".into(), json!(views.len()));
                obj.insert("mimeType".into(), json!(mime));
                views.push(json!({"buffer": 0, "byteOffset": at, "byteLength": bytes.len()}));
            } else if image.get("bufferView").is_some() {
                image["bufferView"] = renumbered(&image["bufferView"]);
            }
        }
    }
    let obj = json
        .as_object_mut()
        .ok_or("the document is not an object")?;
    if views.is_empty() {
        obj.remove("bufferViews");
        obj.remove("buffers");
    } else {
        obj.insert("bufferViews".into(), Value::Array(views));
        obj.insert("buffers".into(), json!([{"byteLength": bin.len()}]));
    }
    let text =
        serde_json::to_vec(&json).map_err(|e| format!("the JSON could not be written: {e}"))?;
    glb::write(&text, &bin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::model::document::tests::model_with;

    #[test]
    fn views_and_images_land_in_one_aligned_bin() {
        let mut model = model_with(
            json!({
                "asset": {"version": "2.0"},
                "buffers": [{"byteLength": 3, "uri": "a.bin"}, {"byteLength": 5, "uri": "b.bin"}],
                "bufferViews": [{"buffer": 0, "byteLength": 3}, {"buffer": 1, "byteOffset": 1, "byteLength": 4}],
                "images": [{"uri": "t.png"}],
                "extensionsUsed": ["KHR_materials_sheen"],
            }),
            vec![vec![1, 2, 3], vec![9, 4, 5, 6, 7]],
        );
        model.images[0] = Some(b"\x89PNG\r\n\x1a\nrest".to_vec());
        let out = write(&model, &BTreeMap::new()).expect("write");
        let chunks = glb::read(&out).expect("a GLB");
        let json: Value = serde_json::from_slice(chunks.json).expect("json");
        assert_eq!(json["buffers"], json!([{"byteLength": 20}]));
        let offsets: Vec<u64> = json["bufferViews"]
            .as_array()
            .expect("views")
            .iter()
            .map(|v| v["byteOffset"].as_u64().expect("offset"))
            .collect();
        assert_eq!(offsets, [0, 4, 8]);
        assert_eq!(
            json["images"][0],
            json!({"bufferView": 2, "mimeType": "image/png"})
        );
        assert_eq!(
            json["extensionsUsed"],
            json!(["KHR_materials_sheen"]),
            "the rest is kept"
        );
        let bin = chunks.bin.expect("bin");
        assert_eq!(&bin[..8], &[1, 2, 3, 0, 4, 5, 6, 7]);
        assert_eq!(&bin[8..12], b"\x89PNG");
    }

    #[test]
    fn replaced_indices_get_a_view_and_orphans_go() {
        let model = model_with(
            json!({
                "asset": {"version": "2.0"},
                "buffers": [{"byteLength": 8}],
                "bufferViews": [{"buffer": 0, "byteLength": 4}, {"buffer": 0, "byteOffset": 4, "byteLength": 4}],
                "accessors": [
                    {"bufferView": 0, "count": 4, "componentType": 5121, "type": "SCALAR"},
                    {"bufferView": 1, "count": 1, "componentType": 5126, "type": "SCALAR"},
                ],
            }),
            vec![vec![0; 8]],
        );
        let out = write(&model, &BTreeMap::from([(0, vec![2, 1, 0])])).expect("write");
        let json: Value = serde_json::from_slice(glb::read(&out).expect("glb").json).expect("json");
        assert_eq!(json["bufferViews"].as_array().expect("views").len(), 2);
        assert_eq!(json["accessors"][1]["bufferView"], 0, "renumbered");
        assert_eq!(json["accessors"][0]["bufferView"], 1);
        assert_eq!(json["accessors"][0]["count"], 3);
        assert_eq!(json["accessors"][0]["componentType"], 5123);
        assert_eq!(json.get("images"), None, "nothing added that was not there");
    }
}
