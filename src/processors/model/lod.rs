//! `lod`: simplified copies of a model, one per ratio, with meshopt's `simplify`: each
//! indexed triangle list is cut towards `ratio` of its triangles, moving no vertex further
//! than `error` (a fraction of the mesh's size) from the surface; simplification stops
//! early when the error would pass that. Vertices are kept as they are; only indices
//! change.

use std::collections::BTreeMap;

use gltf::json::mesh::{Mode, Semantic};
use gltf::json::validation::Checked;
use serde::Serialize;

use stagehand_core::ProcessError;

use super::accessors;
use super::document::Model;
use super::unrecoverable;
use crate::processors::common::Work;

/// One level of detail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// The share of triangles asked for.
    pub ratio: f64,
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
/// Stops between primitives when its attempt ended.
pub(super) fn simplify(
    model: &Model,
    ratio: f64,
    target_error: f64,
    work: &Work,
) -> Result<(BTreeMap<usize, Vec<u32>>, Level), ProcessError> {
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
            work.check()?;
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
            let values = accessors::read_indices(model, indices).map_err(unrecoverable)?;
            let vertices = accessors::read_vec3(model, position).map_err(unrecoverable)?;
            if values.len() % 3 != 0 || values.iter().any(|&i| i as usize >= vertices.len()) {
                return Err(unrecoverable(format!(
                    "{at}: its indices are not whole triangles of its vertices"
                )));
            }
            if vertices.iter().flatten().any(|c| !c.is_finite()) {
                level.triangles += values.len() as u64 / 3;
                level
                    .skipped
                    .push(format!("{at}: a position is not a finite number"));
                continue;
            }
            let target = ((values.len() as f64 * ratio) as usize) / 3 * 3;
            let mut error = 0.0f32;
            let simplified = meshopt::simplify_decoder(
                &values,
                &vertices,
                target,
                target_error as f32,
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
