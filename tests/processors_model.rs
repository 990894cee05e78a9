//! The `model-processing` processor through the real binary over HTTP: models are built
//! here (a UV sphere with normals and UVs, a textured cube with a PNG made by the `image`
//! crate), written into the service's storage, processed, and the outputs read back with
//! the `gltf` crate.

mod common;

use std::borrow::Cow;
use std::f64::consts::PI;

use common::Service;
use serde_json::{Value, json};

const QUEUE: &str = "model-processing";

/// Triangle-list geometry with normals and UVs.
struct Mesh {
    positions: Vec<[f32; 3]>,
    normals: Vec<[f32; 3]>,
    uvs: Vec<[f32; 2]>,
    indices: Vec<u16>,
}

/// A unit UV sphere: `segments` around, `rings` from pole to pole, one triangle per segment
/// at each pole and two elsewhere.
fn sphere(segments: usize, rings: usize) -> Mesh {
    let mut m = Mesh {
        positions: vec![],
        normals: vec![],
        uvs: vec![],
        indices: vec![],
    };
    for r in 0..=rings {
        let phi = PI * r as f64 / rings as f64;
        for s in 0..=segments {
            let theta = 2.0 * PI * s as f64 / segments as f64;
            let p = [
                (phi.sin() * theta.cos()) as f32,
                phi.cos() as f32,
                (phi.sin() * theta.sin()) as f32,
            ];
            m.positions.push(p);
            m.normals.push(p);
            m.uvs
                .push([s as f32 / segments as f32, r as f32 / rings as f32]);
        }
    }
    let at = |r: usize, s: usize| (r * (segments + 1) + s) as u16;
    for r in 0..rings {
        for s in 0..segments {
            let (a, b, c, d) = (at(r, s), at(r + 1, s), at(r + 1, s + 1), at(r, s + 1));
            if r != 0 {
                m.indices.extend([a, b, d]);
            }
            if r != rings - 1 {
                m.indices.extend([b, c, d]);
            }
        }
    }
    m
}

/// A unit cube, four vertices per face.
fn cube() -> Mesh {
    let mut m = Mesh {
        positions: vec![],
        normals: vec![],
        uvs: vec![],
        indices: vec![],
    };
    for axis in 0..3 {
        for sign in [-1.0f32, 1.0] {
            let base = m.positions.len() as u16;
            for (u, v) in [(-1.0f32, -1.0f32), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)] {
                let mut p = [0.0; 3];
                p[axis] = sign;
                p[(axis + 1) % 3] = u;
                p[(axis + 2) % 3] = v;
                let mut n = [0.0; 3];
                n[axis] = sign;
                m.positions.push(p);
                m.normals.push(n);
                m.uvs.push([(u + 1.0) / 2.0, (v + 1.0) / 2.0]);
            }
            m.indices
                .extend([base, base + 1, base + 2, base, base + 2, base + 3]);
        }
    }
    m
}

fn le_bytes<const N: usize>(items: &[[f32; N]]) -> Vec<u8> {
    items
        .iter()
        .flatten()
        .flat_map(|c| c.to_le_bytes())
        .collect()
}

/// The mesh's bytes (positions, normals, UVs, indices, each 4-byte aligned) and the glTF
/// JSON describing them, its buffer at `uri` (none: a GLB's BIN chunk).
fn document(mesh: &Mesh, uri: Option<&str>) -> (Value, Vec<u8>) {
    let mut bin = Vec::new();
    let mut views = Vec::new();
    for (bytes, target) in [
        (le_bytes(&mesh.positions), 34962),
        (le_bytes(&mesh.normals), 34962),
        (le_bytes(&mesh.uvs), 34962),
        (
            mesh.indices.iter().flat_map(|i| i.to_le_bytes()).collect(),
            34963,
        ),
    ] {
        while bin.len() % 4 != 0 {
            bin.push(0);
        }
        views.push(json!({"buffer": 0, "byteOffset": bin.len(), "byteLength": bytes.len(), "target": target}));
        bin.extend(bytes);
    }
    let n = mesh.positions.len();
    let (mut min, mut max) = ([f32::MAX; 3], [f32::MIN; 3]);
    for p in &mesh.positions {
        for i in 0..3 {
            min[i] = min[i].min(p[i]);
            max[i] = max[i].max(p[i]);
        }
    }
    let mut buffer = json!({"byteLength": bin.len()});
    if let Some(uri) = uri {
        buffer["uri"] = json!(uri);
    }
    let doc = json!({
        "asset": {"version": "2.0", "generator": "stagehand tests"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{
            "attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2},
            "indices": 3,
            "material": 0,
        }]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1]}}],
        "buffers": [buffer],
        "bufferViews": views,
        "accessors": [
            {"bufferView": 0, "count": n, "componentType": 5126, "type": "VEC3", "min": min, "max": max},
            {"bufferView": 1, "count": n, "componentType": 5126, "type": "VEC3"},
            {"bufferView": 2, "count": n, "componentType": 5126, "type": "VEC2"},
            {"bufferView": 3, "count": mesh.indices.len(), "componentType": 5123, "type": "SCALAR"},
        ],
    });
    (doc, bin)
}

fn glb(doc: &Value, bin: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(doc).expect("json");
    gltf::Glb {
        header: gltf::binary::Header {
            magic: *b"glTF",
            version: 2,
            length: 0,
        },
        json: Cow::Owned(json),
        bin: Some(Cow::Borrowed(bin)),
    }
    .to_vec()
    .expect("a GLB")
}

/// A 4×4 checkerboard PNG.
fn png() -> Vec<u8> {
    let img = image::RgbaImage::from_fn(4, 4, |x, y| {
        if (x + y) % 2 == 0 {
            image::Rgba([255, 0, 0, 255])
        } else {
            image::Rgba([0, 0, 255, 255])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

fn put(service: &Service, key: &str, bytes: &[u8]) {
    let path = service.data_file(key);
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
    std::fs::write(path, bytes).expect("write input");
}

async fn completed(service: &Service, data: Value) -> Value {
    let id = service
        .api
        .add(QUEUE, json!({"name": "model", "data": data}))
        .await;
    let job = service.api.wait_state(QUEUE, &id, "completed").await;
    assert_eq!(job["progress"], 100, "{job}");
    job["return_value"].clone()
}

/// A GLB the service wrote, read back with the `gltf` crate.
fn read_glb(service: &Service, key: &str) -> gltf::Gltf {
    let bytes = std::fs::read(service.data_file(key)).expect("an output GLB");
    gltf::Gltf::from_slice(&bytes).expect("a GLB the gltf crate reads")
}

/// Each triangle of every primitive as three positions, turned so the least comes first
/// (winding kept), sorted.
fn triangles(model: &gltf::Gltf) -> Vec<[[u32; 3]; 3]> {
    let blob = model.blob.as_deref();
    let mut out = Vec::new();
    for mesh in model.document.meshes() {
        for prim in mesh.primitives() {
            let reader = prim.reader(|_| blob);
            let positions: Vec<[f32; 3]> = reader.read_positions().expect("positions").collect();
            let indices: Vec<u32> = reader.read_indices().expect("indices").into_u32().collect();
            for t in indices.chunks_exact(3) {
                let mut tri = [0, 1, 2].map(|k| positions[t[k] as usize].map(f32::to_bits));
                let first = (0..3).min_by_key(|&k| tri[k]).expect("three");
                tri.rotate_left(first);
                out.push(tri);
            }
        }
    }
    out.sort_unstable();
    out
}

#[tokio::test]
async fn stats_count_a_sphere_exactly() {
    let service = Service::start("").await;
    let (doc, bin) = document(&sphere(32, 16), None);
    put(&service, "in/sphere.glb", &glb(&doc, &bin));
    let out = completed(
        &service,
        json!({"input_key": "in/sphere.glb", "operations": [{"op": "validate"}, {"op": "stats"}], "output_key": "out/sphere.glb"}),
    )
    .await;
    assert_eq!(out["validation"], json!({"valid": true, "problems": []}));
    let stats = &out["stats"];
    assert_eq!(stats["meshes"], 1);
    assert_eq!(stats["primitives"], 1);
    assert_eq!(stats["vertices"], 33 * 17);
    assert_eq!(stats["triangles"], 2 * 32 * 15);
    assert_eq!(
        (
            stats["materials"].clone(),
            stats["textures"].clone(),
            stats["animations"].clone()
        ),
        (json!(1), json!(0), json!(0))
    );
    for (corner, want) in [("min", -1.0), ("max", 1.0)] {
        for c in stats["bounds"][corner].as_array().expect("xyz") {
            assert!((c.as_f64().expect("number") - want).abs() < 1e-6, "{stats}");
        }
    }
    // Nothing asked for a model: only the sidecar is written.
    assert_eq!(out["output_key"], Value::Null);
    assert_eq!(out["keys"], json!(["out/sphere.json"]));
    assert!(!service.data_file("out/sphere.glb").exists());
    let sidecar: Value = serde_json::from_slice(
        &std::fs::read(service.data_file("out/sphere.json")).expect("sidecar"),
    )
    .expect("sidecar JSON");
    assert_eq!(sidecar["operations"], json!(["validate", "stats"]));
    assert_eq!(sidecar["stats"], *stats);
}

#[tokio::test]
async fn pack_makes_one_glb_of_a_gltf_with_an_external_buffer_and_image() {
    let service = Service::start("").await;
    let mesh = cube();
    let (mut doc, bin) = document(&mesh, Some("cube.bin"));
    let texture = png();
    doc["images"] = json!([{"uri": "textures/checker.png"}]);
    doc["textures"] = json!([{"source": 0}]);
    doc["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"] = json!({"index": 0});
    put(&service, "shop/cube/cube.gltf", doc.to_string().as_bytes());
    put(&service, "shop/cube/cube.bin", &bin);
    put(&service, "shop/cube/textures/checker.png", &texture);

    let out = completed(
        &service,
        json!({"input_key": "shop/cube/cube.gltf", "operations": [{"op": "pack"}, {"op": "stats"}], "output_key": "out/cube.glb"}),
    )
    .await;
    assert_eq!(out["output_key"], "out/cube.glb");
    assert_eq!(out["keys"], json!(["out/cube.glb", "out/cube.json"]));
    assert_eq!(out["stats"]["textures"], 1);

    let packed = read_glb(&service, "out/cube.glb");
    let doc = &packed.document;
    assert_eq!(doc.buffers().count(), 1);
    assert!(matches!(
        doc.buffers().next().expect("one").source(),
        gltf::buffer::Source::Bin
    ));
    let blob = packed.blob.as_deref().expect("a BIN chunk");
    assert_eq!(blob.len() % 4, 0);
    for view in doc.views() {
        assert_eq!(view.offset() % 4, 0, "view {} aligned", view.index());
    }
    assert_eq!(
        (
            doc.meshes().count(),
            doc.accessors().count(),
            doc.materials().count(),
            doc.textures().count()
        ),
        (1, 4, 1, 1)
    );
    let image = doc.images().next().expect("the image");
    let gltf::image::Source::View { view, mime_type } = image.source() else {
        panic!("the image is not embedded");
    };
    assert_eq!(mime_type, "image/png");
    assert_eq!(
        &blob[view.offset()..view.offset() + view.length()],
        &texture[..]
    );
    let prim = doc
        .meshes()
        .next()
        .expect("mesh")
        .primitives()
        .next()
        .expect("primitive");
    let reader = prim.reader(|_| Some(blob));
    assert_eq!(
        reader
            .read_positions()
            .expect("positions")
            .collect::<Vec<_>>(),
        mesh.positions
    );
    assert_eq!(
        reader
            .read_tex_coords(0)
            .expect("uvs")
            .into_f32()
            .collect::<Vec<_>>(),
        mesh.uvs
    );
    assert_eq!(
        reader.read_indices().expect("indices").into_u32().count(),
        36
    );
}

#[tokio::test]
async fn optimize_keeps_every_triangle_and_reorders() {
    let service = Service::start("").await;
    let mut mesh = sphere(24, 12);
    // Triangles in a scrambled order, so that there is something to reorder.
    let mut tris: Vec<[u16; 3]> = mesh
        .indices
        .chunks_exact(3)
        .map(|t| [t[0], t[1], t[2]])
        .collect();
    let n = tris.len();
    for i in 0..n {
        tris.swap(i, (i * 7919 + 13) % n);
    }
    mesh.indices = tris.concat();
    let (doc, bin) = document(&mesh, None);
    let input = glb(&doc, &bin);
    put(&service, "in/ball.glb", &input);
    let out = completed(
        &service,
        json!({"input_key": "in/ball.glb", "operations": [{"op": "optimize"}, {"op": "stats"}], "output_key": "out/ball.glb"}),
    )
    .await;
    assert_eq!(out["optimize"], json!({"primitives": 1, "skipped": []}));
    assert_eq!(out["stats"]["triangles"], n);
    let before = triangles(&gltf::Gltf::from_slice(&input).expect("input"));
    let optimized = read_glb(&service, "out/ball.glb");
    assert_eq!(triangles(&optimized), before, "the same set of triangles");
    // Vertex-fetch order: the first triangle uses the first vertices.
    let prim = optimized
        .document
        .meshes()
        .next()
        .expect("mesh")
        .primitives()
        .next()
        .expect("primitive");
    let indices: Vec<u32> = prim
        .reader(|_| optimized.blob.as_deref())
        .read_indices()
        .expect("indices")
        .into_u32()
        .collect();
    assert_eq!(indices[..3], [0, 1, 2]);
    assert_ne!(
        indices,
        mesh.indices
            .iter()
            .map(|&i| u32::from(i))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn lod_halves_the_triangles_per_ratio() {
    let service = Service::start("").await;
    let (doc, bin) = document(&sphere(64, 32), None);
    put(&service, "in/big.glb", &glb(&doc, &bin));
    let full = 2 * 64 * 31;
    let out = completed(
        &service,
        json!({"input_key": "in/big.glb", "operations": [{"op": "lod", "ratios": [0.5, 0.25], "error": 0.05}], "output_key": "out/big.glb"}),
    )
    .await;
    assert_eq!(
        out["keys"],
        json!(["out/big.lod1.glb", "out/big.lod2.glb", "out/big.json"])
    );
    let lods = out["lods"].as_array().expect("levels");
    for (level, ratio) in lods.iter().zip([0.5, 0.25]) {
        let got = level["triangles"].as_u64().expect("triangles");
        let want = (f64::from(full) * ratio) as u64;
        assert!(
            got <= want && got * 10 >= want * 8,
            "{ratio}: {got} of {full}"
        );
        let key = level["key"].as_str().expect("key");
        let read = read_glb(&service, key);
        assert_eq!(
            triangles(&read).len() as u64,
            got,
            "{key} holds what was reported"
        );
    }
}

/// Adds a job allowed three attempts, waits for it to fail, and checks it failed at once
/// with `reason` in its failure.
async fn fails_at_once(service: &Service, data: Value, reason: &str) {
    let id = service
        .api
        .add(
            QUEUE,
            json!({"name": "hostile", "data": data, "options": {"attempts": 3}}),
        )
        .await;
    let job = service.api.wait_state(QUEUE, &id, "failed").await;
    assert_eq!(job["attempts_made"], 1, "unrecoverable: no retry: {job}");
    let failed = job["failed_reason"].as_str().expect("a reason");
    assert!(failed.contains(reason), "wanted '{reason}' in: {failed}");
}

#[tokio::test]
async fn hostile_models_fail_at_once_with_their_reason() {
    let service = Service::start("[processors.model]\nmax_vertices = 1000\n").await;
    let (doc, bin) = document(&sphere(16, 8), None);
    let input =
        |key: &str| json!({"input_key": key, "operations": [{"op": "stats"}, {"op": "optimize"}]});

    let mut draco = doc.clone();
    draco["extensionsUsed"] = json!(["KHR_draco_mesh_compression"]);
    draco["extensionsRequired"] = json!(["KHR_draco_mesh_compression"]);
    put(&service, "bad/draco.glb", &glb(&draco, &bin));
    fails_at_once(
        &service,
        input("bad/draco.glb"),
        "Draco-compressed meshes (KHR_draco_mesh_compression",
    )
    .await;

    let whole = glb(&doc, &bin);
    put(&service, "bad/cut.glb", &whole[..whole.len() / 2]);
    fails_at_once(&service, input("bad/cut.glb"), "truncated GLB").await;

    let mut past = doc.clone();
    past["accessors"][1]["count"] = json!(100_000);
    put(&service, "bad/past.glb", &glb(&past, &bin));
    fails_at_once(
        &service,
        input("bad/past.glb"),
        "accessors[1] (100000 elements of 12 bytes from byte 0) runs past the end",
    )
    .await;

    let mut bad_index = bin.clone();
    let at = doc["bufferViews"][3]["byteOffset"]
        .as_u64()
        .expect("offset") as usize
        + 2 * 5;
    bad_index[at..at + 2].copy_from_slice(&9999u16.to_le_bytes());
    put(&service, "bad/index.glb", &glb(&doc, &bad_index));
    fails_at_once(
        &service,
        input("bad/index.glb"),
        "index 9999 (at 5 in accessors[3]) is out of range",
    )
    .await;

    let (big, big_bin) = document(&sphere(64, 32), None);
    put(&service, "bad/big.glb", &glb(&big, &big_bin));
    fails_at_once(
        &service,
        input("bad/big.glb"),
        "14049 vertices and indices across the primitives",
    )
    .await;

    // The CPU bomb: one accessor shared by many primitives is read once per primitive, so
    // each counts (825 positions and indices each, 1650 > 1000): refused before any work.
    let mut shared = doc.clone();
    let prim = shared["meshes"][0]["primitives"][0].clone();
    shared["meshes"][0]["primitives"] = json!([prim.clone(), prim]);
    put(&service, "bad/shared.glb", &glb(&shared, &bin));
    fails_at_once(
        &service,
        input("bad/shared.glb"),
        "1650 vertices and indices across the primitives (each primitive counted, shared accessors too), more than max_vertices (1000)",
    )
    .await;

    // Nodes must be a forest: a cycle fails every operation but validate at once.
    let mut cyclic = doc.clone();
    cyclic["nodes"] = json!([{"mesh": 0, "children": [1]}, {"children": [0]}]);
    put(&service, "bad/cycle.glb", &glb(&cyclic, &bin));
    fails_at_once(
        &service,
        json!({"input_key": "bad/cycle.glb", "operations": [{"op": "pack"}]}),
        "is its own ancestor (a cycle of children): the node hierarchy must be a forest",
    )
    .await;

    // Two nested scales of 1e20 put the bounds past f32: a reason, not [0, 0, 0].
    let mut huge = doc.clone();
    huge["nodes"] = json!([{"scale": [1e20, 1e20, 1e20], "children": [1]}, {"mesh": 0, "scale": [1e20, 1e20, 1e20]}]);
    put(&service, "bad/huge.glb", &glb(&huge, &bin));
    fails_at_once(
        &service,
        input("bad/huge.glb"),
        "are not finite in 32-bit floats: the node transforms place the meshes past them",
    )
    .await;

    // An accessor without a bufferView is legal (all zeros) but not read here: it says so.
    let mut zeros = doc.clone();
    zeros["accessors"][0]
        .as_object_mut()
        .expect("an accessor")
        .remove("bufferView");
    put(&service, "bad/zeros.glb", &glb(&zeros, &bin));
    fails_at_once(
        &service,
        input("bad/zeros.glb"),
        "accessors[0] has no bufferView (all zeros), which this processor does not read",
    )
    .await;

    let (escaping, _) = document(&sphere(16, 8), Some("../secret.bin"));
    put(
        &service,
        "bad/escape/model.gltf",
        escaping.to_string().as_bytes(),
    );
    put(&service, "bad/secret.bin", &bin);
    fails_at_once(
        &service,
        input("bad/escape/model.gltf"),
        "buffers[0].uri: '../secret.bin' escapes the model's folder",
    )
    .await;

    // Validate alone reports the problems instead of failing; the cycle is one.
    let id = service
        .api
        .add(QUEUE, json!({"name": "v", "data": {"input_key": "bad/cycle.glb", "operations": [{"op": "validate"}]}}))
        .await;
    let job = service.api.wait_state(QUEUE, &id, "completed").await;
    let validation = &job["return_value"]["validation"];
    assert_eq!(validation["valid"], false, "{job}");
    assert_eq!(
        validation["problems"],
        json!([
            "nodes[0] is its own ancestor (a cycle of children): the node hierarchy must be a forest",
            "scenes[0] lists nodes[0], which is not a root (it is a child of nodes[1])"
        ]),
        "{job}"
    );

    let id = service
        .api
        .add(QUEUE, json!({"name": "v", "data": {"input_key": "bad/index.glb", "operations": [{"op": "validate"}]}}))
        .await;
    let job = service.api.wait_state(QUEUE, &id, "completed").await;
    let validation = &job["return_value"]["validation"];
    assert_eq!(validation["valid"], false, "{job}");
    assert!(
        validation["problems"][0]
            .as_str()
            .expect("problem")
            .contains("index 9999"),
        "{job}"
    );
}
