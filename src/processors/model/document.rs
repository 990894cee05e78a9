//! Reading a model: the container (GLB or JSON), the checks made before any of its data is
//! read (version, compression, counts, vertices, buffer sizes), where its buffers and images
//! come from, and the problems `validate` reports.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use gltf::json::Root;
use gltf::json::mesh::Semantic;
use gltf::json::validation::{Checked, Validate};
use serde::Deserialize;
use serde_json::Value;

use super::{accessors, glb, graph, uri};
use crate::config::ModelSettings;

/// Extensions whose data this processor cannot read, with what they compress.
const COMPRESSION: [(&str, &str); 3] = [
    ("KHR_draco_mesh_compression", "Draco-compressed meshes"),
    ("EXT_meshopt_compression", "meshopt-compressed buffers"),
    ("KHR_meshopt_compression", "meshopt-compressed buffers"),
];

/// Top-level arrays held to `max_items` each.
const COUNTED: [&str; 12] = [
    "accessors",
    "bufferViews",
    "buffers",
    "meshes",
    "nodes",
    "materials",
    "textures",
    "images",
    "samplers",
    "animations",
    "skins",
    "scenes",
];

/// Where a buffer's or an image's bytes come from.
#[derive(Debug)]
pub(super) enum Source {
    /// Nowhere (an image in a buffer view, or a buffer that names no data).
    None,
    /// The GLB's BIN chunk or a `data:` URI.
    Bytes(Vec<u8>),
    /// A storage key next to the input.
    Key(String),
}

/// A model whose JSON is read and checked, its external files not yet fetched.
#[derive(Debug)]
pub(super) struct Parsed {
    json: Value,
    root: Root,
    /// What the `gltf` crate's validation found.
    pub problems: Vec<String>,
    buffers: Vec<Source>,
    images: Vec<Source>,
}

/// A model with all its bytes.
#[derive(Debug)]
pub(super) struct Model {
    /// The document as read; outputs are written from it (so nothing it holds is lost).
    pub json: Value,
    /// The same document, typed.
    pub root: Root,
    /// Each buffer's bytes (empty when it has none).
    pub buffers: Vec<Vec<u8>>,
    /// The bytes of each image given by URI.
    pub images: Vec<Option<Vec<u8>>>,
}

/// Reads the container and JSON of `input` (stored under `input_key`) and checks it against
/// `limits`; the error is the reason it is refused.
pub(super) fn parse(
    input: &[u8],
    input_key: &str,
    limits: &ModelSettings,
) -> Result<Parsed, String> {
    let (text, bin) = if input.starts_with(glb::MAGIC) {
        let chunks = glb::read(input)?;
        (chunks.json, chunks.bin)
    } else if input.trim_ascii_start().starts_with(b"{") {
        (input, None)
    } else {
        return Err("not glTF: the input is neither a GLB (no glTF magic) nor JSON".into());
    };
    let json: Value = serde_json::from_slice(text)
        .map_err(|e| format!("not glTF: the JSON does not parse: {e}"))?;
    check_asset(&json)?;
    check_compression(&json)?;
    check_counts(&json, limits.max_items)?;
    let root = Root::deserialize(&json).map_err(|e| format!("not glTF: {e}"))?;
    check_sizes(&root, limits)?;
    let mut problems = validation_problems(&root);
    problems.extend(graph::problems(&root));
    let max = limits.max_input_bytes;
    let source = |uri: &Option<String>, what: String| -> Result<Source, String> {
        match uri {
            None => Ok(Source::None),
            Some(u) => {
                match uri::resolve(u, input_key, max).map_err(|e| format!("{what}.uri: {e}"))? {
                    uri::Resolved::Data(bytes) => Ok(Source::Bytes(bytes)),
                    uri::Resolved::Key(key) => Ok(Source::Key(key)),
                }
            }
        }
    };
    let mut bin = bin.map(<[u8]>::to_vec);
    let mut buffers = Vec::with_capacity(root.buffers.len());
    for (i, b) in root.buffers.iter().enumerate() {
        buffers.push(match (&b.uri, i) {
            (None, 0) if bin.is_some() => Source::Bytes(bin.take().unwrap_or_default()),
            (uri, _) => source(uri, format!("buffers[{i}]"))?,
        });
    }
    let mut images = Vec::with_capacity(root.images.len());
    for (i, image) in root.images.iter().enumerate() {
        images.push(source(&image.uri, format!("images[{i}]"))?);
    }
    Ok(Parsed {
        json,
        root,
        problems,
        buffers,
        images,
    })
}

fn check_asset(json: &Value) -> Result<(), String> {
    if !json.is_object() {
        return Err("not glTF: the JSON is not an object".into());
    }
    let version = json["asset"]["version"]
        .as_str()
        .ok_or_else(|| "not glTF: no asset.version".to_string())?;
    let major = |v: &str| v.split('.').next().and_then(|m| m.parse::<u32>().ok());
    if major(version) != Some(2) {
        return Err(format!(
            "glTF version '{version}' is not supported (only 2.x)"
        ));
    }
    if let Some(min) = json["asset"]["minVersion"].as_str()
        && min != "2.0"
    {
        return Err(format!(
            "glTF minVersion '{min}' is not supported (only 2.0)"
        ));
    }
    Ok(())
}

fn check_compression(json: &Value) -> Result<(), String> {
    for list in ["extensionsRequired", "extensionsUsed"] {
        for name in json[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Some((_, what)) = COMPRESSION.iter().find(|(n, _)| *n == name) {
                return Err(format!(
                    "{what} ({name} in {list}) are not supported: decompress the model first"
                ));
            }
        }
    }
    Ok(())
}

fn check_counts(json: &Value, max: usize) -> Result<(), String> {
    for name in COUNTED {
        let n = json[name].as_array().map_or(0, Vec::len);
        if n > max {
            return Err(format!("{n} {name}, more than max_items ({max})"));
        }
    }
    let primitives: usize = json["meshes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["primitives"].as_array().map_or(0, Vec::len))
        .sum();
    if primitives > max {
        return Err(format!(
            "{primitives} mesh primitives, more than max_items ({max})"
        ));
    }
    Ok(())
}

/// The accessors holding a primitive's `POSITION`, each once.
pub(super) fn position_accessors(root: &Root) -> BTreeSet<usize> {
    root.meshes
        .iter()
        .flat_map(|m| &m.primitives)
        .filter_map(|p| p.attributes.get(&Checked::Valid(Semantic::Positions)))
        .map(|i| i.value())
        .collect()
}

/// The vertex count (the `POSITION` accessors' counts), as claimed by the JSON.
pub(super) fn vertex_count(root: &Root) -> u64 {
    position_accessors(root)
        .into_iter()
        .filter_map(|i| root.accessors.get(i))
        .fold(0u64, |n, a| n.saturating_add(a.count.0))
}

/// The vertices and indices the operations read: each primitive's `POSITION` count plus
/// its index count, a primitive sharing an accessor with others counted each time (stats,
/// optimize and lod work per primitive, so this bounds their work, not only the data).
pub(super) fn primitive_reads(root: &Root) -> u64 {
    let count = |i: usize| root.accessors.get(i).map_or(0, |a| a.count.0);
    root.meshes
        .iter()
        .flat_map(|m| &m.primitives)
        .map(|p| {
            let position = p.attributes.get(&Checked::Valid(Semantic::Positions));
            let vertices = position.map_or(0, |i| count(i.value()));
            vertices.saturating_add(p.indices.map_or(0, |i| count(i.value())))
        })
        .fold(0u64, u64::saturating_add)
}

fn check_sizes(root: &Root, limits: &ModelSettings) -> Result<(), String> {
    let reads = primitive_reads(root);
    if reads > limits.max_vertices {
        return Err(format!(
            "{reads} vertices and indices across the primitives (each primitive counted, shared accessors too), more than max_vertices ({})",
            limits.max_vertices
        ));
    }
    let max = limits.max_input_bytes;
    for (i, b) in root.buffers.iter().enumerate() {
        if b.byte_length.0 > max {
            return Err(format!(
                "buffers[{i}] claims {} bytes, more than max_input_bytes ({max})",
                b.byte_length.0
            ));
        }
    }
    let viewed = root
        .buffer_views
        .iter()
        .fold(0u64, |n, v| n.saturating_add(v.byte_length.0));
    if viewed > max {
        return Err(format!(
            "the bufferViews cover {viewed} bytes together, more than max_input_bytes ({max})"
        ));
    }
    Ok(())
}

/// What the `gltf` crate's validation reports (references out of range, missing or invalid
/// values). A required extension it does not know is not a problem here: the JSON is kept
/// as it is, and the compressions that matter were refused before.
fn validation_problems(root: &Root) -> Vec<String> {
    let mut problems = Vec::new();
    // The crate's primitive check indexes accessors by POSITION unchecked: check first.
    for (m, mesh) in root.meshes.iter().enumerate() {
        for (p, prim) in mesh.primitives.iter().enumerate() {
            if let Some(i) = prim.attributes.get(&Checked::Valid(Semantic::Positions))
                && i.value() >= root.accessors.len()
            {
                problems.push(format!(
                    "meshes[{m}].primitives[{p}].attributes.POSITION: index out of bounds"
                ));
            }
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut found = Vec::new();
        root.validate(root, gltf::json::Path::new, &mut |path, error| {
            let path = path().to_string();
            // An accessor without a bufferView (and without sparse) is legal glTF, all
            // zeros; the crate calls it missing data. Reading it is refused where it is read.
            let zeros = error == gltf::json::validation::Error::Missing
                && path.starts_with("accessors[")
                && path.ends_with("].bufferView");
            if !path.starts_with("extensionsRequired") && !zeros {
                found.push(format!("{path}: {error}"));
            }
        });
        found
    }));
    checked.unwrap_or_else(|_| vec!["the glTF validator failed on this document".into()])
}

impl Parsed {
    /// The storage keys of the model's external files, each once.
    pub(super) fn keys(&self) -> BTreeSet<String> {
        self.buffers
            .iter()
            .chain(&self.images)
            .filter_map(|s| match s {
                Source::Key(k) => Some(k.clone()),
                _ => None,
            })
            .collect()
    }

    /// The model with the bytes of its external files (`files`, by key).
    pub(super) fn assemble(self, files: &BTreeMap<String, Bytes>) -> Model {
        let take = |s: Source| match s {
            Source::None => None,
            Source::Bytes(b) => Some(b),
            Source::Key(k) => files.get(&k).map(|b| b.to_vec()),
        };
        Model {
            json: self.json,
            root: self.root,
            buffers: self
                .buffers
                .into_iter()
                .map(|s| take(s).unwrap_or_default())
                .collect(),
            images: self.images.into_iter().map(take).collect(),
        }
    }
}

/// What `validate` finds in the data, beyond the JSON: buffers shorter than they claim,
/// views and accessors running past their containers, primitives whose attributes disagree
/// on the vertex count, and indices that are no vertex.
pub(super) fn data_problems(model: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, b) in model.root.buffers.iter().enumerate() {
        let present = model.buffers.get(i).map_or(0, Vec::len) as u64;
        if present < b.byte_length.0 {
            problems.push(format!(
                "buffers[{i}] claims {} bytes, {present} are present",
                b.byte_length.0
            ));
        }
    }
    for v in 0..model.root.buffer_views.len() {
        if let Err(e) = accessors::view_range(model, v) {
            problems.push(e);
        }
    }
    let mut bad_accessors = BTreeSet::new();
    for (i, a) in model.root.accessors.iter().enumerate() {
        let checked = match a.buffer_view {
            Some(_) => accessors::span(model, i).map(|_| ()),
            None => Ok(()),
        }
        .and_then(|()| accessors::check_sparse(model, i));
        if let Err(e) = checked {
            problems.push(e);
            bad_accessors.insert(i);
        }
    }
    for i in position_accessors(&model.root) {
        if bad_accessors.contains(&i) || !accessors::has_plain_data(model, i) {
            continue;
        }
        if let Some(k) = accessors::read_vec3(model, i)
            .into_iter()
            .flatten()
            .position(|p| p.iter().any(|c| !c.is_finite()))
        {
            problems.push(format!(
                "accessors[{i}] (POSITION) holds a value that is not a finite number (element {k})"
            ));
        }
    }
    for (i, image) in model.root.images.iter().enumerate() {
        if image.uri.is_some() && model.images.get(i).is_none_or(Option::is_none) {
            problems.push(format!("images[{i}] has no data"));
        }
    }
    for (m, mesh) in model.root.meshes.iter().enumerate() {
        for (p, prim) in mesh.primitives.iter().enumerate() {
            let at = format!("meshes[{m}].primitives[{p}]");
            let counts: BTreeSet<u64> = prim
                .attributes
                .values()
                .filter_map(|i| model.root.accessors.get(i.value()))
                .map(|a| a.count.0)
                .collect();
            if counts.len() > 1 {
                problems.push(format!(
                    "{at}: its attributes have different counts {counts:?}"
                ));
            }
            let Some(&vertices) = counts.iter().next() else {
                continue;
            };
            let Some(indices) = prim.indices.map(|i| i.value()) else {
                continue;
            };
            if bad_accessors.contains(&indices)
                || model
                    .root
                    .accessors
                    .get(indices)
                    .is_none_or(|a| a.sparse.is_some())
            {
                continue;
            }
            match accessors::read_indices(model, indices) {
                Ok(values) => {
                    if let Some((k, v)) = values
                        .iter()
                        .enumerate()
                        .find(|(_, v)| u64::from(**v) >= vertices)
                    {
                        problems.push(format!(
                            "{at}: index {v} (at {k} in accessors[{indices}]) is out of range: the primitive has {vertices} vertices"
                        ));
                    }
                    if prim.mode == Checked::Valid(gltf::json::mesh::Mode::Triangles)
                        && values.len() % 3 != 0
                    {
                        problems.push(format!(
                            "{at}: {} indices do not make whole triangles",
                            values.len()
                        ));
                    }
                }
                Err(e) => problems.push(format!("{at}: {e}")),
            }
        }
    }
    problems
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    /// A model of `json` and these buffers, as a test builds it.
    pub(in crate::processors::model) fn model_with(json: Value, buffers: Vec<Vec<u8>>) -> Model {
        let root = Root::deserialize(&json).expect("a glTF root");
        let images = vec![None; root.images.len()];
        Model {
            json,
            root,
            buffers,
            images,
        }
    }

    fn limits() -> ModelSettings {
        ModelSettings {
            max_input_bytes: 1000,
            max_vertices: 100,
            max_items: 4,
        }
    }

    fn refused(json: Value) -> String {
        parse(json.to_string().as_bytes(), "m/a.gltf", &limits()).expect_err("refused")
    }

    #[test]
    fn versions_and_non_gltf_are_refused() {
        assert!(refused(json!({"asset": {"version": "1.0"}})).contains("'1.0' is not supported"));
        assert!(
            refused(json!({"asset": {"version": "2.0", "minVersion": "2.1"}}))
                .contains("minVersion")
        );
        assert!(refused(json!({"hello": "world"})).contains("no asset.version"));
        assert!(refused(json!([1, 2])).contains("not glTF"));
        let err = parse(b"\x89PNG....", "a.glb", &limits()).expect_err("png");
        assert!(err.contains("neither a GLB"), "{err}");
        let err = parse(b"{\"asset\": ", "a.gltf", &limits()).expect_err("cut");
        assert!(err.contains("does not parse"), "{err}");
    }

    #[test]
    fn compressed_models_are_refused_by_name() {
        let err = refused(
            json!({"asset": {"version": "2.0"}, "extensionsRequired": ["KHR_draco_mesh_compression"]}),
        );
        assert!(
            err.contains("Draco") && err.contains("KHR_draco_mesh_compression"),
            "{err}"
        );
        let err = refused(
            json!({"asset": {"version": "2.0"}, "extensionsUsed": ["EXT_meshopt_compression"]}),
        );
        assert!(err.contains("meshopt-compressed"), "{err}");
    }

    #[test]
    fn counts_vertices_and_sizes_are_limited_before_data() {
        let five = vec![json!({"mesh": 0}); 5];
        assert!(
            refused(json!({"asset": {"version": "2.0"}, "nodes": five}))
                .contains("5 nodes, more than max_items (4)")
        );
        let err = refused(json!({
            "asset": {"version": "2.0"},
            "accessors": [{"count": 101, "componentType": 5126, "type": "VEC3"}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}, {"attributes": {"POSITION": 0}}]}],
        }));
        assert!(
            err.contains("202 vertices and indices across the primitives"),
            "{err}"
        );
        // One accessor shared by many primitives counts once per primitive (the CPU bomb:
        // each one's work is done again), and indices count too.
        let err = refused(json!({
            "asset": {"version": "2.0"},
            "accessors": [
                {"count": 30, "componentType": 5126, "type": "VEC3"},
                {"count": 12, "componentType": 5125, "type": "SCALAR"},
            ],
            "meshes": [{"primitives": [
                {"attributes": {"POSITION": 0}, "indices": 1},
                {"attributes": {"POSITION": 0}, "indices": 1},
                {"attributes": {"POSITION": 0}, "indices": 1},
            ]}],
        }));
        assert!(
            err.contains("126 vertices and indices across the primitives")
                && err.contains("more than max_vertices (100)"),
            "{err}"
        );
        let err = refused(json!({"asset": {"version": "2.0"}, "buffers": [{"byteLength": 1001}]}));
        assert!(err.contains("buffers[0] claims 1001 bytes"), "{err}");
        let err = refused(json!({
            "asset": {"version": "2.0"},
            "buffers": [{"byteLength": 1000}],
            "bufferViews": [{"buffer": 0, "byteLength": 600}, {"buffer": 0, "byteLength": 600}],
        }));
        assert!(err.contains("cover 1200 bytes"), "{err}");
    }

    #[test]
    fn a_bad_position_index_is_a_problem_not_a_panic() {
        let parsed = parse(
            json!({"asset": {"version": "2.0"}, "meshes": [{"primitives": [{"attributes": {"POSITION": 7}}]}]})
                .to_string()
                .as_bytes(),
            "a.gltf",
            &limits(),
        )
        .expect("parsed");
        assert_eq!(parsed.problems.len(), 1, "{:?}", parsed.problems);
        assert!(parsed.problems[0].contains("POSITION: index out of bounds"));
    }

    #[test]
    fn out_of_range_indices_are_found() {
        let mut bytes = Vec::new();
        for v in [[0f32, 0., 0.], [1., 0., 0.], [0., 1., 0.]] {
            for c in v {
                bytes.extend_from_slice(&c.to_le_bytes());
            }
        }
        bytes.extend_from_slice(&[0, 1, 3, 0]);
        let m = model_with(
            json!({
                "asset": {"version": "2.0"},
                "buffers": [{"byteLength": 40}],
                "bufferViews": [{"buffer": 0, "byteLength": 36}, {"buffer": 0, "byteOffset": 36, "byteLength": 3}],
                "accessors": [
                    {"bufferView": 0, "count": 3, "componentType": 5126, "type": "VEC3", "min": [0,0,0], "max": [1,1,0]},
                    {"bufferView": 1, "count": 3, "componentType": 5121, "type": "SCALAR"},
                ],
                "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
            }),
            vec![bytes],
        );
        let problems = data_problems(&m);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("index 3 (at 2 in accessors[1]) is out of range"),
            "{problems:?}"
        );
    }
}
