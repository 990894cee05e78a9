//! `lod`: simplified copies of a model, one per ratio, with meshopt's `simplify`: each
//! indexed triangle list is cut towards `ratio` of its triangles, moving no vertex further
//! than `error` (a fraction of the mesh's size) from the surface; simplification stops
//! early when the error would pass that. Vertices are kept as they are; only indices
//! change.

use std::collections::BTreeMap;

use gltf::json::mesh::{Mode, Semantic};
use gltf::json::validation::Checked;
use serde::Serialize;

use super::accessors;
use super::document::Model;

/// One level of detail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// The share of triangles asked for.
    pub ratio: f32,
    /// Where it was written.
    pub key: String,
    /// Triangles it has.
    pub triangles: u64,
    /// The largest error meshopt reports for its primitives (relative to each one's size).
    pub error: f32,
    /// Primitives left whole, and why.
    pub skipped: Vec<String>,
}

/// What simplifying the model towards `ratio` gives: new indices by accessor, and the level.
pub(super) fn simplify(
    model: &Model,
    ratio: f32,
    target_error: f32,
) -> Result<(BTreeMap<usize, Vec<u32>>, Level), String> {
    let mut replaced: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    let mut positions_of: BTreeMap<usize, usize> = BTreeMap::new();
    let mut level = Level {
        ratio,
        key: String::new(),
        triangles: 0,
        error: 0.0,
        skipped: Vec::new(),
    };
    for (m, mesh) in model.root.meshes.iter().enumerate() {
        for (p, prim) in mesh.primitives.iter().enumerate() {
            let at = format!("meshes[{m}].primitives[{p}]");
            let position = prim.attributes.get(&Checked::Valid(Semantic::Positions));
            let (Checked::Valid(Mode::Triangles), Some(indices), Some(position)) =
                (prim.mode, prim.indices, position)
            else {
                level.triangles += super::stats::primitive_triangles(&model.root, prim);
                level
                    .skipped
                    .push(format!("{at}: not an indexed triangle list with positions"));
                continue;
            };
            let (indices, position) = (indices.value(), position.value());
            if let Some(done) = replaced.get(&indices) {
                if positions_of.get(&indices) == Some(&position) {
                    level.triangles += done.len() as u64 / 3;
                } else {
                    level.triangles += super::stats::primitive_triangles(&model.root, prim);
                    level
                        .skipped
                        .push(format!("{at}: its indices are shared with other vertices"));
                }
                continue;
            }
            let values = accessors::read_indices(model, indices)?;
            let vertices = accessors::read_vec3(model, position)?;
            if values.len() % 3 != 0 || values.iter().any(|&i| i as usize >= vertices.len()) {
                return Err(format!(
                    "{at}: its indices are not whole triangles of its vertices"
                ));
            }
            if vertices.iter().flatten().any(|c| !c.is_finite()) {
                level.triangles += values.len() as u64 / 3;
                level
                    .skipped
                    .push(format!("{at}: a position is not a finite number"));
                continue;
            }
            let target = ((values.len() as f64 * f64::from(ratio)) as usize) / 3 * 3;
            let mut error = 0.0f32;
            let simplified = meshopt::simplify_decoder(
                &values,
                &vertices,
                target,
                target_error,
                meshopt::SimplifyOptions::None,
                Some(&mut error),
            );
            level.error = level.error.max(error);
            level.triangles += simplified.len() as u64 / 3;
            positions_of.insert(indices, position);
            replaced.insert(indices, simplified);
        }
    }
    Ok((replaced, level))
}
