//! `stats`: what a model holds, and the box around it.
//!
//! Counts are of definitions (a mesh used by two nodes counts once). Vertices are the
//! counts of the `POSITION` accessors, each accessor once; triangles are each primitive's
//! (triangle lists, strips and fans; points and lines have none). Bounds are in world space:
//! each mesh's box, from its `POSITION` data (not the accessors' `min`/`max`, which may lie),
//! placed by the node transforms of the default scene (the first scene when none is named;
//! meshes as they are when there is no scene). A rotated mesh gives the box around its
//! rotated box, which can be larger than the tightest one. Bounds are computed in `f64`; a
//! box past `f32` (two nested scales of 1e20 make 1e40) fails `stats` with the reason,
//! never a clipped box. Each `POSITION` accessor is read once however many primitives share
//! it.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use gltf::json::Root;
use gltf::json::mesh::{Mode, Semantic};
use gltf::json::validation::Checked;
use serde::Serialize;
use stagehand_core::ProcessError;

use super::accessors;
use super::document::{Model, vertex_count};
use super::graph::position_of;
use super::unrecoverable;
use crate::processors::common::Work;

/// An axis-aligned box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bounds {
    /// The least x, y, z.
    pub min: [f32; 3],
    /// The greatest x, y, z.
    pub max: [f32; 3],
}

/// A box in 64-bit floats, as bounds are computed (a world scale such as 1e40 is past
/// `f32`; the result is checked to fit before it is reported).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Box64 {
    min: [f64; 3],
    max: [f64; 3],
}

impl Box64 {
    fn add(this: Option<Box64>, p: [f64; 3]) -> Option<Box64> {
        let b = this.unwrap_or(Box64 { min: p, max: p });
        Some(Box64 {
            min: [0, 1, 2].map(|i| b.min[i].min(p[i])),
            max: [0, 1, 2].map(|i| b.max[i].max(p[i])),
        })
    }

    fn union(a: Option<Box64>, b: Box64) -> Option<Box64> {
        Box64::add(Box64::add(a, b.min), b.max)
    }

    fn corners(&self) -> impl Iterator<Item = [f64; 3]> + '_ {
        (0..8).map(|k| {
            [0, 1, 2].map(|i| {
                if k & (1 << i) == 0 {
                    self.min[i]
                } else {
                    self.max[i]
                }
            })
        })
    }

    /// The box as reported, or why it cannot be: a coordinate that is not finite in `f32`.
    fn to_bounds(self) -> Result<Bounds, String> {
        let narrow = |v: [f64; 3]| v.map(|c| c as f32);
        let b = Bounds {
            min: narrow(self.min),
            max: narrow(self.max),
        };
        if b.min.iter().chain(&b.max).all(|c| c.is_finite()) {
            Ok(b)
        } else {
            Err(format!(
                "the bounds ({:e}, {:e}, {:e})..({:e}, {:e}, {:e}) are not finite in 32-bit floats: the node transforms place the meshes past them",
                self.min[0], self.min[1], self.min[2], self.max[0], self.max[1], self.max[2]
            ))
        }
    }
}

/// What `stats` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Meshes defined.
    pub meshes: usize,
    /// Primitives across the meshes.
    pub primitives: usize,
    /// Vertices (`POSITION` elements, each accessor once).
    pub vertices: u64,
    /// Triangles drawn by the primitives.
    pub triangles: u64,
    /// The world-space box of the default scene; none without positions.
    pub bounds: Option<Bounds>,
    /// Materials defined.
    pub materials: usize,
    /// Textures defined.
    pub textures: usize,
    /// Animations defined.
    pub animations: usize,
}

/// The triangles one primitive draws.
pub(super) fn primitive_triangles(root: &Root, p: &gltf::json::mesh::Primitive) -> u64 {
    let count = |i: usize| root.accessors.get(i).map_or(0, |a| a.count.0);
    let n = match p.indices {
        Some(i) => count(i.value()),
        None => p
            .attributes
            .get(&Checked::Valid(Semantic::Positions))
            .map_or(0, |i| count(i.value())),
    };
    match p.mode {
        Checked::Valid(Mode::Triangles) => n / 3,
        Checked::Valid(Mode::TriangleStrip | Mode::TriangleFan) => n.saturating_sub(2),
        _ => 0,
    }
}

/// The triangles `root`'s primitives draw.
pub(super) fn triangles(root: &Root) -> u64 {
    root.meshes
        .iter()
        .flat_map(|m| &m.primitives)
        .map(|p| primitive_triangles(root, p))
        .sum()
}

/// The box of each mesh in its own space; each `POSITION` accessor is read once however
/// many primitives share it, and the work stops between primitives when its attempt ended.
fn mesh_bounds(model: &Model, work: &Work) -> Result<Vec<Option<Box64>>, ProcessError> {
    let mut of_accessor: BTreeMap<usize, Option<Box64>> = BTreeMap::new();
    let mut boxes = Vec::with_capacity(model.root.meshes.len());
    for mesh in &model.root.meshes {
        let mut b = None;
        for i in mesh.primitives.iter().filter_map(position_of) {
            work.check()?;
            let found = match of_accessor.entry(i) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => *e.insert(accessor_box(model, i).map_err(unrecoverable)?),
            };
            if let Some(found) = found {
                b = Box64::union(b, found);
            }
        }
        boxes.push(b);
    }
    Ok(boxes)
}

/// The box of one `POSITION` accessor's data.
fn accessor_box(model: &Model, i: usize) -> Result<Option<Box64>, String> {
    let mut b = None;
    for v in accessors::read_vec3(model, i)? {
        if v.iter().any(|c| !c.is_finite()) {
            return Err(format!(
                "accessors[{i}] (POSITION) holds a value that is not a finite number"
            ));
        }
        b = Box64::add(b, v.map(f64::from));
    }
    Ok(b)
}

type Mat = [f64; 16]; // column-major, as glTF

const IDENTITY: Mat = [
    1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1.,
];

fn mul(a: &Mat, b: &Mat) -> Mat {
    let mut out = [0.0; 16];
    for c in 0..4 {
        for r in 0..4 {
            out[c * 4 + r] = (0..4).map(|k| a[k * 4 + r] * b[c * 4 + k]).sum();
        }
    }
    out
}

/// A node's own transform: its matrix, or translation · rotation · scale.
fn local(node: &gltf::json::Node) -> Mat {
    if let Some(m) = node.matrix {
        return m.map(f64::from);
    }
    let [tx, ty, tz] = node.translation.unwrap_or([0.0; 3]).map(f64::from);
    let [x, y, z, w] = node
        .rotation
        .as_ref()
        .map_or([0.0, 0.0, 0.0, 1.0], |q| q.0)
        .map(f64::from);
    let [sx, sy, sz] = node.scale.unwrap_or([1.0; 3]).map(f64::from);
    [
        (1. - 2. * (y * y + z * z)) * sx,
        (2. * (x * y + z * w)) * sx,
        (2. * (x * z - y * w)) * sx,
        0.,
        (2. * (x * y - z * w)) * sy,
        (1. - 2. * (x * x + z * z)) * sy,
        (2. * (y * z + x * w)) * sy,
        0.,
        (2. * (x * z + y * w)) * sz,
        (2. * (y * z - x * w)) * sz,
        (1. - 2. * (x * x + y * y)) * sz,
        0.,
        tx,
        ty,
        tz,
        1.,
    ]
}

fn apply(m: &Mat, p: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|r| m[r] * p[0] + m[4 + r] * p[1] + m[8 + r] * p[2] + m[12 + r])
}

/// The world-space box of the default scene, in `f64`. The walk is iterative and visits
/// each node once (validation has refused cycles and second parents already).
fn world_bounds(model: &Model, boxes: &[Option<Box64>]) -> Result<Option<Box64>, String> {
    let root = &model.root;
    let scene = root
        .scene
        .map(|s| s.value())
        .or((!root.scenes.is_empty()).then_some(0));
    let Some(scene) = scene.and_then(|s| root.scenes.get(s)) else {
        return Ok(boxes.iter().flatten().copied().fold(None, Box64::union));
    };
    let mut out = None;
    let mut seen = BTreeSet::new();
    let mut stack: Vec<(usize, Mat)> = scene.nodes.iter().map(|n| (n.value(), IDENTITY)).collect();
    while let Some((index, parent)) = stack.pop() {
        let Some(node) = root.nodes.get(index).filter(|_| seen.insert(index)) else {
            continue;
        };
        let world = mul(&parent, &local(node));
        if let Some(b) = node
            .mesh
            .and_then(|m| boxes.get(m.value()))
            .copied()
            .flatten()
        {
            for c in b.corners().map(|c| apply(&world, c)) {
                if c.iter().any(|x| !x.is_finite()) {
                    return Err(format!(
                        "nodes[{index}]'s world transform is not finite in 64-bit floats (its ancestors' scales multiply past them)"
                    ));
                }
                out = Box64::add(out, c);
            }
        }
        for child in node.children.iter().flatten() {
            stack.push((child.value(), world));
        }
    }
    Ok(out)
}

/// The model's stats.
pub(super) fn stats(model: &Model, work: &Work) -> Result<Stats, ProcessError> {
    let root = &model.root;
    let boxes = mesh_bounds(model, work)?;
    let bounds = world_bounds(model, &boxes)
        .and_then(|b| b.map(Box64::to_bounds).transpose())
        .map_err(unrecoverable)?;
    Ok(Stats {
        meshes: root.meshes.len(),
        primitives: root.meshes.iter().map(|m| m.primitives.len()).sum(),
        vertices: vertex_count(root),
        triangles: triangles(root),
        bounds,
        materials: root.materials.len(),
        textures: root.textures.len(),
        animations: root.animations.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::model::document::tests::model_with;
    use serde_json::json;

    /// A unit triangle (three positions, no indices) under the given nodes and scenes.
    fn triangle(nodes: serde_json::Value, scenes: serde_json::Value) -> Model {
        let mut bytes = Vec::new();
        for c in [0f32, 0., 0., 1., 0., 0., 0., 1., 0.] {
            bytes.extend_from_slice(&c.to_le_bytes());
        }
        model_with(
            json!({
                "asset": {"version": "2.0"},
                "buffers": [{"byteLength": 36}],
                "bufferViews": [{"buffer": 0, "byteLength": 36}],
                "accessors": [{"bufferView": 0, "count": 3, "componentType": 5126, "type": "VEC3", "min": [0,0,0], "max": [1,1,0]}],
                "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
                "nodes": nodes,
                "scenes": scenes,
            }),
            vec![bytes],
        )
    }

    #[test]
    fn bounds_follow_node_transforms_down_the_tree() {
        let m = triangle(
            json!([
                {"translation": [10, 0, 0], "children": [1]},
                {"mesh": 0, "scale": [2, 2, 2], "rotation": [0, 0, 0.70710677, 0.70710677]},
            ]),
            json!([{"nodes": [0]}]),
        );
        let s = stats(&m, &Work::for_test(false)).expect("stats");
        assert_eq!(
            (s.meshes, s.primitives, s.vertices, s.triangles),
            (1, 1, 3, 1)
        );
        let b = s.bounds.expect("bounds");
        // Scaled by 2, turned 90° about z (x -> y, y -> -x), moved 10 along x.
        for (got, want) in b.min.iter().chain(&b.max).zip([8., 0., 0., 10., 2., 0.]) {
            assert!((got - want).abs() < 1e-5, "{b:?}");
        }
    }

    #[test]
    fn bounds_past_f32_are_a_reason_not_a_clipped_box() {
        let m = triangle(
            json!([{"scale": [1e20, 1e20, 1e20], "children": [1]}, {"mesh": 0, "scale": [1e20, 1e20, 1e20]}]),
            json!([{"nodes": [0]}]),
        );
        let err = stats(&m, &Work::for_test(false)).expect_err("not finite");
        assert!(
            err.to_string().contains("1e40")
                && err.to_string().contains("not finite in 32-bit floats"),
            "{err}"
        );
        // Ten nested scales of 1e38 pass even f64 (1e380).
        let nodes: Vec<serde_json::Value> = (0..10)
            .map(|i| match i {
                9 => json!({"mesh": 0, "scale": [1e38, 1e38, 1e38]}),
                _ => json!({"scale": [1e38, 1e38, 1e38], "children": [i + 1]}),
            })
            .collect();
        let m = triangle(json!(nodes), json!([{"nodes": [0]}]));
        let err = stats(&m, &Work::for_test(false)).expect_err("past f64");
        assert!(
            err.to_string()
                .contains("nodes[9]'s world transform is not finite"),
            "{err}"
        );
    }

    #[test]
    fn an_ended_attempt_stops_stats_between_primitives() {
        let m = triangle(json!([]), json!([]));
        let err = stats(&m, &Work::for_test(true)).expect_err("stopped");
        assert!(err.to_string().contains("the attempt ended"), "{err}");
    }

    #[test]
    fn a_long_chain_of_nodes_is_walked_without_recursion() {
        let n = 100_000;
        let nodes: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                if i + 1 < n {
                    json!({"translation": [1, 0, 0], "children": [i + 1]})
                } else {
                    json!({"mesh": 0})
                }
            })
            .collect();
        let m = triangle(json!(nodes), json!([{"nodes": [0]}]));
        let b = stats(&m, &Work::for_test(false))
            .expect("stats")
            .bounds
            .expect("bounds");
        assert_eq!((b.min[0], b.max[0]), (99_999., 100_000.));
    }

    #[test]
    fn cycles_and_missing_scenes_do_not_hang_or_panic() {
        let m = triangle(
            json!([{"mesh": 0, "children": [1]}, {"children": [0, 5]}]),
            json!([{"nodes": [0]}]),
        );
        assert!(
            stats(&m, &Work::for_test(false))
                .expect("stats")
                .bounds
                .is_some()
        );
        let m = triangle(json!([]), json!([]));
        let b = stats(&m, &Work::for_test(false))
            .expect("stats")
            .bounds
            .expect("untransformed");
        assert_eq!((b.min, b.max), ([0., 0., 0.], [1., 1., 0.]));
    }
}
