//! What `validate` finds in the node graph and in the numbers placing meshes, beyond the
//! `gltf` crate's checks: glTF requires the nodes to be a forest (each node the child of at
//! most one node, no node its own ancestor, a scene's nodes roots), and every transform and
//! `POSITION` bound a finite 32-bit float (JSON such as `1e39` overflows to infinity).
//! Every check here is iterative and linear in the nodes, so 100k-node chains are fine.

use gltf::json::Root;
use gltf::json::mesh::Semantic;
use gltf::json::validation::Checked;
use serde_json::Value;

/// The node graph's and the transforms' problems.
pub(super) fn problems(root: &Root) -> Vec<String> {
    let mut problems = Vec::new();
    let parents = parents(root, &mut problems);
    cycles(&parents, &mut problems);
    scene_roots(root, &parents, &mut problems);
    transforms(root, &mut problems);
    position_bounds(root, &mut problems);
    problems
}

/// Each node's parent (the first one, when a node has more, which is a problem).
fn parents(root: &Root, problems: &mut Vec<String>) -> Vec<Option<usize>> {
    let n = root.nodes.len();
    let mut parents = vec![None; n];
    for (p, node) in root.nodes.iter().enumerate() {
        for child in node.children.iter().flatten().map(|c| c.value()) {
            match parents.get(child) {
                None => {} // Out of range: the crate's validation reports it.
                Some(Some(first)) => problems.push(format!(
                    "nodes[{child}] has two parents (nodes[{first}] and nodes[{p}]): the node hierarchy must be a forest"
                )),
                Some(None) => parents[child] = Some(p),
            }
        }
    }
    parents
}

/// Each cycle of parents once, found by walking up from every node with a mark per node.
fn cycles(parents: &[Option<usize>], problems: &mut Vec<String>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; parents.len()];
    let mut path = Vec::new();
    for start in 0..parents.len() {
        let mut at = Some(start);
        while let Some(i) = at.filter(|&i| marks[i] == Mark::New) {
            marks[i] = Mark::OnPath;
            path.push(i);
            at = parents[i];
        }
        if let Some(i) = at.filter(|&i| marks[i] == Mark::OnPath) {
            problems.push(format!(
                "nodes[{i}] is its own ancestor (a cycle of children): the node hierarchy must be a forest"
            ));
        }
        for i in path.drain(..) {
            marks[i] = Mark::Done;
        }
    }
}

/// A scene's nodes must be roots, each listed once.
fn scene_roots(root: &Root, parents: &[Option<usize>], problems: &mut Vec<String>) {
    for (s, scene) in root.scenes.iter().enumerate() {
        let mut listed = std::collections::BTreeSet::new();
        for n in scene.nodes.iter().map(|n| n.value()) {
            if !listed.insert(n) {
                problems.push(format!("scenes[{s}] lists nodes[{n}] twice"));
            }
            if let Some(Some(p)) = parents.get(n) {
                problems.push(format!(
                    "scenes[{s}] lists nodes[{n}], which is not a root (it is a child of nodes[{p}])"
                ));
            }
        }
    }
}

/// Every node's matrix, translation, rotation and scale is finite.
fn transforms(root: &Root, problems: &mut Vec<String>) {
    for (i, node) in root.nodes.iter().enumerate() {
        let parts: [(&str, Option<&[f32]>); 4] = [
            ("matrix", node.matrix.as_ref().map(|m| &m[..])),
            ("translation", node.translation.as_ref().map(|t| &t[..])),
            ("rotation", node.rotation.as_ref().map(|r| &r.0[..])),
            ("scale", node.scale.as_ref().map(|s| &s[..])),
        ];
        for (name, values) in parts {
            if values.is_some_and(|v| v.iter().any(|c| !c.is_finite())) {
                problems.push(format!("nodes[{i}].{name} is not finite in 32-bit floats"));
            }
        }
    }
}

/// Every `POSITION` accessor's `min` and `max` is finite as a 32-bit float.
fn position_bounds(root: &Root, problems: &mut Vec<String>) {
    let positions = super::document::position_accessors(root);
    for i in positions {
        let Some(a) = root.accessors.get(i) else {
            continue;
        };
        for (name, value) in [("min", &a.min), ("max", &a.max)] {
            let finite = |v: &Value| v.as_f64().is_some_and(|x| (x as f32).is_finite());
            let bad = value
                .as_ref()
                .and_then(Value::as_array)
                .is_some_and(|v| !v.iter().all(finite));
            if bad {
                problems.push(format!(
                    "accessors[{i}].{name} (POSITION) is not finite in 32-bit floats"
                ));
            }
        }
    }
}

/// A primitive's `POSITION` accessor.
pub(super) fn position_of(p: &gltf::json::mesh::Primitive) -> Option<usize> {
    p.attributes
        .get(&Checked::Valid(Semantic::Positions))
        .map(|i| i.value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn found(nodes: Value, scenes: Value) -> Vec<String> {
        let json = json!({"asset": {"version": "2.0"}, "nodes": nodes, "scenes": scenes});
        problems(&Root::deserialize(&json).expect("a glTF root"))
    }

    #[test]
    fn cycles_self_cycles_and_second_parents_are_problems() {
        let p = found(
            json!([{"mesh": 0, "children": [1]}, {"children": [0]}]),
            json!([]),
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("is its own ancestor"), "{p:?}");
        let p = found(json!([{"children": [0]}]), json!([]));
        assert_eq!(
            p,
            [
                "nodes[0] is its own ancestor (a cycle of children): the node hierarchy must be a forest"
            ]
        );
        let p = found(
            json!([{"children": [2]}, {"children": [2]}, {}]),
            json!([{"nodes": [0, 1]}]),
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("nodes[2] has two parents (nodes[0] and nodes[1])"));
        let p = found(
            json!([{"children": [1]}, {}]),
            json!([{"nodes": [0, 1, 0]}]),
        );
        assert!(
            p.iter().any(|e| e.contains("lists nodes[0] twice")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|e| e.contains("nodes[1], which is not a root")),
            "{p:?}"
        );
    }

    #[test]
    fn a_long_chain_is_a_forest_and_does_not_recurse() {
        let n = 100_000;
        let nodes: Vec<Value> = (0..n)
            .map(|i| {
                if i + 1 < n {
                    json!({"children": [i + 1]})
                } else {
                    json!({})
                }
            })
            .collect();
        assert_eq!(
            found(json!(nodes), json!([{"nodes": [0]}])),
            Vec::<String>::new()
        );
        let mut ring = nodes;
        ring[n - 1] = json!({"children": [0]});
        let p = found(json!(ring), json!([]));
        assert_eq!(p.len(), 1, "one cycle, reported once: {p:?}");
    }

    #[test]
    fn transforms_and_position_bounds_past_f32_are_problems() {
        let json = json!({
            "asset": {"version": "2.0"},
            "nodes": [{"scale": [1e39, 1, 1]}, {"translation": [0, 0, 0]}],
            "accessors": [{"count": 1, "componentType": 5126, "type": "VEC3", "min": [0, 0, 0], "max": [1e39, 0, 0]}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        });
        let p = problems(&Root::deserialize(&json).expect("a glTF root"));
        assert_eq!(
            p,
            [
                "nodes[0].scale is not finite in 32-bit floats",
                "accessors[0].max (POSITION) is not finite in 32-bit floats"
            ]
        );
    }
}
