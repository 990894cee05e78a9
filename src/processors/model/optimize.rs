//! `optimize`: each indexed triangle list reordered for the GPU with meshopt: triangles in
//! vertex-cache order (`optimize_vertex_cache`), then vertices in the order the triangles
//! first use them (the vertex-fetch order meshopt's remap gives; vertices no triangle uses
//! go last, so counts stay). Indices and every vertex attribute (morph targets too) are
//! rewritten in place, so the JSON keeps its shape.
//!
//! A primitive is left as it is, with the reason in `skipped`, when rewriting it in place
//! could change something else: an accessor or buffer view it shares with another primitive,
//! a skin, an animation or an image, views that overlap others, sparse data.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;
use stagehand_core::ProcessError;

use super::accessors::{self, Span};
use super::document::Model;
use super::unrecoverable;
use crate::processors::common::Work;

/// What `optimize` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Optimized {
    /// Primitives reordered.
    pub primitives: usize,
    /// Primitives left as they were, and why.
    pub skipped: Vec<String>,
}

fn index(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|i| usize::try_from(i).ok())
}

/// The accessors one primitive (as JSON) reads for its vertices: attributes and morph
/// targets.
pub(super) fn vertex_accessors(prim: &Value) -> BTreeSet<usize> {
    let attributes = prim["attributes"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values());
    let targets = prim["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|m| m.values());
    attributes.chain(targets).filter_map(index).collect()
}

/// Who reads each accessor: a primitive `(mesh, primitive)`, or `None` for anything else.
fn accessor_users(json: &Value) -> BTreeMap<usize, BTreeSet<Option<(usize, usize)>>> {
    let mut users: BTreeMap<usize, BTreeSet<Option<(usize, usize)>>> = BTreeMap::new();
    for (m, mesh) in json["meshes"].as_array().into_iter().flatten().enumerate() {
        for (p, prim) in mesh["primitives"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for a in vertex_accessors(prim)
                .into_iter()
                .chain(index(&prim["indices"]))
            {
                users.entry(a).or_default().insert(Some((m, p)));
            }
        }
    }
    for skin in json["skins"].as_array().into_iter().flatten() {
        if let Some(a) = index(&skin["inverseBindMatrices"]) {
            users.entry(a).or_default().insert(None);
        }
    }
    for anim in json["animations"].as_array().into_iter().flatten() {
        for s in anim["samplers"].as_array().into_iter().flatten() {
            for a in [index(&s["input"]), index(&s["output"])]
                .into_iter()
                .flatten()
            {
                users.entry(a).or_default().insert(None);
            }
        }
    }
    users
}

/// Who reads each buffer view: accessors (`Some`) or images and sparse data (`None`).
fn view_users(json: &Value) -> BTreeMap<usize, BTreeSet<Option<usize>>> {
    let mut users: BTreeMap<usize, BTreeSet<Option<usize>>> = BTreeMap::new();
    for (i, a) in json["accessors"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(v) = index(&a["bufferView"]) {
            users.entry(v).or_default().insert(Some(i));
        }
        for part in ["indices", "values"] {
            if let Some(v) = index(&a["sparse"][part]["bufferView"]) {
                users.entry(v).or_default().insert(None);
            }
        }
    }
    for image in json["images"].as_array().into_iter().flatten() {
        if let Some(v) = index(&image["bufferView"]) {
            users.entry(v).or_default().insert(None);
        }
    }
    users
}

/// The order in which `indices` first use each of `n` vertices: `remap[old] = new`, unused
/// vertices after the used ones, in their old order.
pub(super) fn fetch_order(indices: &[u32], n: usize) -> Vec<u32> {
    let mut remap = vec![u32::MAX; n];
    let mut next = 0u32;
    for &i in indices {
        if let Some(slot) = remap.get_mut(i as usize)
            && *slot == u32::MAX
        {
            *slot = next;
            next += 1;
        }
    }
    for slot in &mut remap {
        if *slot == u32::MAX {
            *slot = next;
            next += 1;
        }
    }
    remap
}

/// The buffer views in groups that overlap in their buffer (connected: each view of a group
/// overlaps another of it), found once by sorting, so that checking a primitive's views
/// does not compare them with every view.
struct Overlaps {
    /// Each view's group.
    group: Vec<usize>,
    /// Each group's views.
    members: Vec<Vec<usize>>,
}

fn overlaps(model: &Model) -> Overlaps {
    let n = model.root.buffer_views.len();
    let mut ranged: Vec<(usize, usize, usize, usize)> = (0..n)
        .filter_map(|v| {
            let (b, r) = accessors::view_range(model, v).ok()?;
            Some((b, r.start, r.end, v))
        })
        .collect();
    ranged.sort_unstable();
    let mut group = vec![usize::MAX; n];
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut reach: Option<(usize, usize)> = None; // the current group's buffer and end
    for (b, start, end, v) in ranged {
        match reach {
            Some((rb, re)) if rb == b && start < re => reach = Some((b, re.max(end))),
            _ => {
                members.push(Vec::new());
                reach = Some((b, end));
            }
        }
        group[v] = members.len() - 1;
        if let Some(m) = members.last_mut() {
            m.push(v);
        }
    }
    // A view without a valid range is a group of its own (the primitive using it is skipped).
    for (v, g) in group.iter_mut().enumerate() {
        if *g == usize::MAX {
            *g = members.len();
            members.push(vec![v]);
        }
    }
    Overlaps { group, members }
}

/// What one primitive's rewrite needs, found before anything is changed.
struct Plan {
    indices: Span,
    values: Vec<u32>,
    vertices: Vec<Span>,
    count: usize,
}

fn plan(
    model: &Model,
    prim: &Value,
    accessor_users: &BTreeMap<usize, BTreeSet<Option<(usize, usize)>>>,
    view_users: &BTreeMap<usize, BTreeSet<Option<usize>>>,
    overlaps: &Overlaps,
) -> Result<Plan, String> {
    if index(&prim["mode"]).unwrap_or(4) != 4 {
        return Err("not a triangle list".into());
    }
    let indices = index(&prim["indices"]).ok_or("no indices")?;
    let vertex = vertex_accessors(prim);
    let mine: BTreeSet<usize> = vertex.iter().copied().chain([indices]).collect();
    if vertex.contains(&indices) {
        return Err(format!(
            "accessors[{indices}] is both indices and a vertex attribute"
        ));
    }
    let mut views = BTreeSet::new();
    for &a in &mine {
        if accessor_users.get(&a).is_some_and(|u| u.len() > 1) {
            return Err(format!(
                "accessors[{a}] is shared with another primitive, a skin or an animation"
            ));
        }
        let view = model
            .root
            .accessors
            .get(a)
            .and_then(|x| x.buffer_view)
            .map(|v| v.value());
        views.insert(view.ok_or_else(|| {
            format!(
                "accessors[{a}] has no bufferView (all zeros), which this processor does not read"
            )
        })?);
    }
    for &v in &views {
        let shared = view_users
            .get(&v)
            .is_some_and(|u| u.iter().any(|who| who.is_none_or(|a| !mine.contains(&a))));
        if shared {
            return Err(format!("bufferViews[{v}] is shared with other data"));
        }
        accessors::view_range(model, v)?;
    }
    let groups: BTreeSet<usize> = views
        .iter()
        .filter_map(|&v| overlaps.group.get(v))
        .copied()
        .collect();
    for g in groups {
        // Stops at the first view not the primitive's: at most its own views are passed.
        if let Some(w) = overlaps.members[g].iter().find(|w| !views.contains(w)) {
            let v = overlaps.members[g]
                .iter()
                .find(|v| views.contains(v))
                .unwrap_or(w);
            return Err(format!(
                "bufferViews[{v}] overlaps bufferViews[{w}] (directly or through other views)"
            ));
        }
    }
    let vertices: Vec<Span> = vertex
        .iter()
        .map(|&a| accessors::plain_span(model, a))
        .collect::<Result<_, _>>()?;
    let count = vertices.first().map_or(0, |s| s.count);
    if vertices.iter().any(|s| s.count != count) {
        return Err("its attributes have different counts".into());
    }
    let span = accessors::plain_span(model, indices)?;
    let values = accessors::read_indices(model, indices)?;
    if values.len() % 3 != 0 || values.iter().any(|&i| i as usize >= count) {
        return Err("its indices are not whole triangles of its vertices".into());
    }
    if count > 0 && accessors::encode_indices(&[count as u32 - 1], span.component).is_none() {
        return Err("its index type cannot hold every vertex".into());
    }
    Ok(Plan {
        indices: span,
        values,
        vertices,
        count,
    })
}

/// Writes a planned primitive's vertices in `remap` order and its new indices `values`.
fn rewrite(model: &mut Model, plan: &Plan, values: &[u32], remap: &[u32]) -> Result<(), String> {
    for span in &plan.vertices {
        let old = accessors::read_packed(model, span)?;
        let mut new = vec![0; old.len()];
        for (i, e) in old.chunks_exact(span.size.max(1)).enumerate() {
            let at = remap[i] as usize * span.size;
            new[at..at + span.size].copy_from_slice(e);
        }
        accessors::write_packed(model, span, &new)?;
    }
    let bytes = accessors::encode_indices(values, plan.indices.component)
        .ok_or("indices do not fit their type")?;
    accessors::write_packed(model, &plan.indices, &bytes)
}

/// Reorders every primitive it can, stopping between primitives when its attempt ended.
pub(super) fn optimize(model: &mut Model, work: &Work) -> Result<Optimized, ProcessError> {
    let accessor_users = accessor_users(&model.json);
    let view_users = view_users(&model.json);
    let overlaps = overlaps(model);
    let meshes = model.json["meshes"].as_array().cloned().unwrap_or_default();
    let mut done = Optimized::default();
    for (m, mesh) in meshes.iter().enumerate() {
        for (p, prim) in mesh["primitives"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            work.check()?;
            let mut plan = match plan(model, prim, &accessor_users, &view_users, &overlaps) {
                Ok(plan) => plan,
                Err(why) => {
                    done.skipped
                        .push(format!("meshes[{m}].primitives[{p}]: {why}"));
                    continue;
                }
            };
            let mut values = std::mem::take(&mut plan.values);
            meshopt::optimize_vertex_cache_in_place(&mut values, plan.count);
            let remap = fetch_order(&values, plan.count);
            for v in &mut values {
                *v = remap[*v as usize];
            }
            rewrite(model, &plan, &values, &remap).map_err(unrecoverable)?;
            done.primitives += 1;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_order_numbers_vertices_by_first_use_and_keeps_unused_ones() {
        assert_eq!(fetch_order(&[3, 1, 3, 0], 5), vec![2, 1, 3, 0, 4]);
        assert_eq!(fetch_order(&[], 2), vec![0, 1]);
    }

    #[test]
    fn overlapping_views_group_by_sorting() {
        let m = crate::processors::model::document::tests::model_with(
            serde_json::json!({
                "asset": {"version": "2.0"},
                "buffers": [{"byteLength": 40}, {"byteLength": 40}],
                "bufferViews": [
                    {"buffer": 0, "byteOffset": 20, "byteLength": 10},
                    {"buffer": 0, "byteOffset": 0, "byteLength": 12},
                    {"buffer": 0, "byteOffset": 10, "byteLength": 11},
                    {"buffer": 1, "byteOffset": 0, "byteLength": 10},
                    {"buffer": 0, "byteOffset": 30, "byteLength": 10},
                    {"buffer": 0, "byteOffset": 30, "byteLength": 99},
                ],
            }),
            vec![vec![0; 40], vec![0; 40]],
        );
        let o = overlaps(&m);
        let mut groups: Vec<Vec<usize>> = o.members.clone();
        groups.iter_mut().for_each(|g| g.sort_unstable());
        groups.sort();
        // 1 overlaps 2, 2 overlaps 0; 4 only touches 0; 3 is in another buffer; 5 is invalid.
        assert_eq!(groups, vec![vec![0, 1, 2], vec![3], vec![4], vec![5]]);
        assert_eq!(o.group[0], o.group[1]);
    }

    #[test]
    fn vertex_accessors_include_morph_targets() {
        let prim = serde_json::json!({
            "attributes": {"POSITION": 0, "NORMAL": 1},
            "targets": [{"POSITION": 3}, {"POSITION": 4, "NORMAL": 1}],
            "indices": 2,
        });
        assert_eq!(vertex_accessors(&prim), BTreeSet::from([0, 1, 3, 4]));
    }
}
