//! The operations a `model-processing` job asks for, and their arguments' checks (made
//! before the input is read).

use serde::Deserialize;

/// The largest `lod` error accepted by default: 1% of a mesh's size.
const DEFAULT_LOD_ERROR: f64 = 0.01;
/// The most levels one `lod` makes.
const MAX_LEVELS: usize = 8;
/// The least `lod` ratio accepted: a millionth of the triangles.
const MIN_RATIO: f64 = 1e-6;

/// One operation; each names itself with `"op"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Reports `valid` and `problems` instead of failing on them.
    Validate,
    /// Counts and bounds.
    Stats,
    /// Writes the model as one GLB.
    Pack,
    /// Reorders triangles and vertices for the GPU (and writes the GLB).
    Optimize,
    /// Writes a simplified copy per ratio.
    Lod {
        /// The share of triangles each level keeps, each in [1e-6, 1). Read as f64 so that a
        /// refusal names the value given (1e-300 as f32 would be 0).
        ratios: Vec<f64>,
        /// The error simplification may make, relative to a mesh's size (default 0.01).
        #[serde(default = "default_lod_error")]
        error: f64,
    },
}

fn default_lod_error() -> f64 {
    DEFAULT_LOD_ERROR
}

impl Op {
    /// The operation's name, as a job gives it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Validate => "validate",
            Op::Stats => "stats",
            Op::Pack => "pack",
            Op::Optimize => "optimize",
            Op::Lod { .. } => "lod",
        }
    }
}

/// Refuses an empty list, an operation given twice, and `lod` arguments out of range.
pub(super) fn check(ops: &[Op]) -> Result<(), String> {
    if ops.is_empty() {
        return Err(
            "no operations: give one or more of validate, stats, pack, optimize, lod".into(),
        );
    }
    for (i, op) in ops.iter().enumerate() {
        if ops[..i].iter().any(|o| o.name() == op.name()) {
            return Err(format!("operation '{}' is given twice", op.name()));
        }
        if let Op::Lod { ratios, error } = op {
            if ratios.is_empty() || ratios.len() > MAX_LEVELS {
                return Err(format!("lod: give 1 to {MAX_LEVELS} ratios"));
            }
            if let Some(r) = ratios.iter().find(|r| !(MIN_RATIO..1.0).contains(*r)) {
                return Err(format!(
                    "lod: ratio {r:e} is outside the accepted range: at least {MIN_RATIO:e} and less than 1"
                ));
            }
            if !(0.0..=1.0).contains(error) {
                return Err(format!(
                    "lod: error {error:e} is outside the accepted range: 0 to 1"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(v: serde_json::Value) -> Result<Vec<Op>, String> {
        let ops: Vec<Op> = serde_json::from_value(v).map_err(|e| e.to_string())?;
        check(&ops).map(|()| ops)
    }

    #[test]
    fn operations_parse_with_their_arguments() {
        let parsed =
            ops(json!([{"op": "validate"}, {"op": "lod", "ratios": [0.5, 0.25]}])).expect("ok");
        assert_eq!(
            parsed[1],
            Op::Lod {
                ratios: vec![0.5, 0.25],
                error: 0.01
            }
        );
    }

    #[test]
    fn bad_operations_are_refused_with_the_reason() {
        for (v, says) in [
            (json!([]), "no operations"),
            (json!([{"op": "stats"}, {"op": "stats"}]), "twice"),
            (json!([{"op": "lod", "ratios": []}]), "1 to 8 ratios"),
            (
                json!([{"op": "lod", "ratios": [1.0]}]),
                "ratio 1e0 is outside the accepted range: at least 1e-6 and less than 1",
            ),
            (
                json!([{"op": "lod", "ratios": [1e-300]}]),
                "ratio 1e-300 is outside the accepted range: at least 1e-6",
            ),
            (
                json!([{"op": "lod", "ratios": [0.0]}]),
                "ratio 0e0 is outside",
            ),
            (
                json!([{"op": "lod", "ratios": [0.5], "error": -1}]),
                "error -1e0 is outside the accepted range: 0 to 1",
            ),
            (
                json!([{"op": "lod", "ratios": [0.5], "error": 1e300}]),
                "error 1e300 is outside",
            ),
            (
                json!([{"op": "lod", "ratios": [0.5], "target": 3}]),
                "unknown field",
            ),
            (json!([{"op": "draco"}]), "unknown variant"),
        ] {
            let err = ops(v.clone()).expect_err("refused");
            assert!(err.contains(says), "{v}: {err}");
        }
    }
}
