//! The `model-processing` processor: reads a glTF 2.0 model (`.glb`, or `.gltf` with its
//! buffers and images) from storage, runs the job's operations in order, and writes the
//! results back: a GLB, levels of detail, and a JSON sidecar.
//!
//! Job data:
//!
//! ```json
//! {"input_key": "shop/coat/coat.gltf", "operations": [{"op": "validate"}, {"op": "stats"},
//!  {"op": "optimize"}, {"op": "lod", "ratios": [0.5, 0.25]}], "output_key": "models/coat.glb"}
//! ```
//!
//! - `input_key`: a `.glb` or `.gltf`. A `.gltf`'s relative buffer and image URIs resolve
//!   against the input key's folder in the same storage; `data:` base64 URIs are decoded;
//!   absolute URLs and paths leaving that folder are refused.
//! - `input_bucket`, `output_bucket`: named storages (`storage.buckets`), default the main one.
//! - `output_key`: the model GLB, ending in `.glb`; default `models/{job id}.glb`. Its stem
//!   (the key without `.glb`) names the other outputs.
//! - `operations`, each naming itself with `"op"` (each at most once):
//!
//! | op | does |
//! |---|---|
//! | `validate` | reports `valid` and `problems` (without it, a problem fails the job) |
//! | `stats` | meshes, primitives, vertices, triangles, bounds, materials, textures, animations (see [`stats`]) |
//! | `pack` | writes the model as one GLB: buffers and images in a single 4-byte-aligned BIN chunk |
//! | `optimize` | meshopt vertex-cache and vertex-fetch order for each indexed triangle list (see [`optimize`]), then writes the GLB |
//! | `lod` | `ratios` (each in [1e-6, 1)), `error` (default 0.01): a simplified GLB per ratio, `{stem}.lod{N}.glb` (see [`lod`]) |
//!
//! Outputs: the model GLB at `output_key` when `pack` or `optimize` ran (always packed: one
//! buffer, images embedded), the levels of detail, and always `{stem}.json` with the
//! operations run, the keys written and what they reported. A model with problems is
//! written nowhere unless `validate` is its only operation (then only the sidecar is).
//!
//! The return value: `output_key` (null when no model GLB was written), `output_bucket`,
//! `keys` (every key written, the sidecar last), and as the operations ran `validation`
//! (`valid`, `problems`), `stats`, `optimize` (`primitives`, `skipped`) and `lods`
//! (`ratio`, `key`, `triangles`, `error`, `skipped`).
//!
//! Hostile input is refused before its data is read: the input's bytes (and the external
//! files' together with it) against `max_input_bytes`, the counts of accessors, buffer
//! views, buffers, meshes, primitives, nodes, materials, textures, images and the like
//! against `max_items`, the vertices and indices read (each primitive's `POSITION` and index
//! counts, summed over primitives, so an accessor shared by many counts for each) against
//! `max_vertices`, the node hierarchy (a forest: no cycles, one parent at most), each buffer's `byteLength` and all views' lengths together against
//! `max_input_bytes`. Draco- and meshopt-compressed models, a cut or corrupt GLB, JSON that
//! is not glTF and versions other than 2 fail at once with the reason. Ranges (views in
//! buffers, accessors in views) and index values are checked before any data is read by
//! index, so meshopt never sees an index past its vertices. Long operations stop between
//! primitives once the job's attempt has ended (timeout, shutdown).

mod accessors;
mod document;
mod glb;
mod graph;
mod lod;
mod ops;
mod optimize;
mod pack;
mod stats;
mod uri;

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use stagehand_core::{JobContext, ProcessError, Processor};

pub use lod::Level;
pub use ops::Op;
pub use optimize::Optimized;
pub use stats::{Bounds, Stats};

use super::common::{Resources, Work, file_name, run_reporting, step_progress, storage_error};
use crate::config::ModelSettings;

/// A `model-processing` job's data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelJob {
    /// The storage key of the `.glb` or `.gltf`.
    #[serde(alias = "inputKey")]
    pub input_key: String,
    /// A named storage to read from (`storage.buckets`).
    #[serde(default, alias = "inputBucket")]
    pub input_bucket: Option<String>,
    /// What to do, in order.
    #[serde(default)]
    pub operations: Vec<Op>,
    /// Where to write the model GLB; default `models/{job id}.glb`.
    #[serde(default, alias = "outputKey")]
    pub output_key: Option<String>,
    /// A named storage to write to (`storage.buckets`).
    #[serde(default, alias = "outputBucket")]
    pub output_bucket: Option<String>,
}

/// Processes 3D models.
#[derive(Debug, Clone)]
pub struct ModelProcessor {
    resources: Resources,
}

impl ModelProcessor {
    /// A model processor over `resources`.
    pub fn new(resources: Resources) -> Self {
        ModelProcessor { resources }
    }
}

/// What the CPU work made: files to write, in order, and what the operations reported.
struct Made {
    files: Vec<(String, Vec<u8>)>,
    model_written: bool,
    report: serde_json::Map<String, Value>,
}

fn unrecoverable(reason: String) -> ProcessError {
    ProcessError::unrecoverable(reason)
}

/// At most five problems, and how many more there are.
fn summary(problems: &[String]) -> String {
    let mut text = problems
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > 5 {
        text.push_str(&format!(" (and {} more)", problems.len() - 5));
    }
    text
}

fn run(
    parsed: document::Parsed,
    files: &BTreeMap<String, Bytes>,
    ops: &[Op],
    output_key: &str,
    stem: &str,
    work: &Work,
) -> Result<Made, ProcessError> {
    let mut problems = parsed.problems.clone();
    let mut model = parsed.assemble(files);
    if problems.is_empty() {
        // Data ranges are only looked at once every reference is known to exist.
        problems = document::data_problems(&model);
    }
    if !problems.is_empty() && ops.iter().any(|op| *op != Op::Validate) {
        return Err(unrecoverable(format!(
            "the model is not valid glTF: {}",
            summary(&problems)
        )));
    }
    let mut made = Made {
        files: Vec::new(),
        model_written: false,
        report: serde_json::Map::new(),
    };
    let total = ops.len() + 1;
    for (i, op) in ops.iter().enumerate() {
        work.check()?;
        match op {
            Op::Validate => {
                made.report.insert(
                    "validation".into(),
                    json!({"valid": problems.is_empty(), "problems": problems}),
                );
            }
            Op::Stats => {
                let stats = stats::stats(&model, work)?;
                made.report.insert("stats".into(), json!(stats));
            }
            Op::Pack => made.model_written = true,
            Op::Optimize => {
                let done = optimize::optimize(&mut model, work)?;
                made.report.insert("optimize".into(), json!(done));
                made.model_written = true;
            }
            Op::Lod { ratios, error } => {
                let mut levels = Vec::new();
                for (n, ratio) in ratios.iter().enumerate() {
                    work.check()?;
                    let (replaced, mut level) = lod::simplify(&model, *ratio, *error, work)?;
                    level.key = format!("{stem}.lod{}.glb", n + 1);
                    let glb = pack::write(&model, &replaced).map_err(unrecoverable)?;
                    made.files.push((level.key.clone(), glb));
                    levels.push(level);
                }
                made.report.insert("lods".into(), json!(levels));
            }
        }
        work.report(step_progress(i + 1, total));
    }
    if made.model_written {
        let glb = pack::write(&model, &BTreeMap::new()).map_err(unrecoverable)?;
        made.files.insert(0, (output_key.to_string(), glb));
    }
    Ok(made)
}

#[async_trait]
impl Processor for ModelProcessor {
    async fn process(&self, ctx: JobContext) -> Result<Value, ProcessError> {
        ctx.progress(0).await;
        let job: ModelJob = ctx.data()?;
        ops::check(&job.operations).map_err(unrecoverable)?;
        let output_key = job
            .output_key
            .clone()
            .unwrap_or_else(|| format!("models/{}.glb", file_name(ctx.id())));
        let stem = output_key
            .strip_suffix(".glb")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                unrecoverable(format!("output_key '{output_key}' does not end in .glb"))
            })?
            .to_string();
        let source = self.resources.bucket(job.input_bucket.as_deref())?.clone();
        let target = self.resources.bucket(job.output_bucket.as_deref())?.clone();
        let limits: ModelSettings = self.resources.settings.model.clone();
        let input = source
            .get_limited(&job.input_key, limits.max_input_bytes)
            .await
            .map_err(storage_error)?;
        ctx.progress(10).await;

        let input_len = input.len() as u64;
        let key = job.input_key.clone();
        let parse_limits = limits.clone();
        let parsed = run_reporting(&ctx, &self.resources.cpu, move |_| {
            document::parse(&input, &key, &parse_limits).map_err(unrecoverable)
        })
        .await?;
        // External files share the input's byte budget.
        let mut budget = limits.max_input_bytes.saturating_sub(input_len);
        let mut files = BTreeMap::new();
        for key in parsed.keys() {
            let bytes = source
                .get_limited(&key, budget)
                .await
                .map_err(storage_error)?;
            budget = budget.saturating_sub(bytes.len() as u64);
            files.insert(key, bytes);
        }

        let work_ops = job.operations.clone();
        let (work_key, work_stem) = (output_key.clone(), stem.clone());
        let made = run_reporting(&ctx, &self.resources.cpu, move |work| {
            run(parsed, &files, &work_ops, &work_key, &work_stem, work)
        })
        .await?;

        let mut keys = Vec::new();
        for (key, bytes) in made.files {
            target
                .put(&key, Bytes::from(bytes))
                .await
                .map_err(storage_error)?;
            keys.push(key);
        }
        let sidecar_key = format!("{stem}.json");
        let mut sidecar = made.report.clone();
        sidecar.insert("input_key".into(), json!(job.input_key));
        sidecar.insert("input_bucket".into(), json!(job.input_bucket));
        sidecar.insert(
            "operations".into(),
            json!(job.operations.iter().map(Op::name).collect::<Vec<_>>()),
        );
        sidecar.insert("keys".into(), json!(keys));
        let text = serde_json::to_vec_pretty(&Value::Object(sidecar)).map_err(|e| {
            ProcessError::unrecoverable(format!("the sidecar could not be written: {e}"))
        })?;
        target
            .put(&sidecar_key, Bytes::from(text))
            .await
            .map_err(storage_error)?;
        keys.push(sidecar_key);
        ctx.progress(100).await;

        let mut out = made.report;
        out.insert(
            "output_key".into(),
            if made.model_written {
                json!(output_key)
            } else {
                Value::Null
            },
        );
        out.insert("output_bucket".into(), json!(job.output_bucket));
        out.insert("keys".into(), json!(keys));
        Ok(Value::Object(out))
    }
}
