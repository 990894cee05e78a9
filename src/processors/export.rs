//! The `export` processor: writes records (given in the job, or read from a storage key) as
//! CSV, JSON Lines or a JSON array to storage, reporting progress, and returns where it wrote.

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use stagehand_core::{JobContext, ProcessError, Processor};

use crate::storage::{Storage, StorageError};

/// Records between two progress reports.
const PROGRESS_EVERY: usize = 1000;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Comma-separated values with a header row; records must be objects.
    Csv,
    /// One JSON value per line.
    Jsonl,
    /// One JSON array.
    Json,
}

impl ExportFormat {
    fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Json => "json",
        }
    }
}

/// An export job's data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportJob {
    /// How to write the records.
    pub format: ExportFormat,
    /// The records, inline.
    #[serde(default)]
    pub records: Option<Vec<Value>>,
    /// Or a storage key holding a JSON array or JSON Lines.
    #[serde(default)]
    pub input_key: Option<String>,
    /// Where to write; default `exports/{job id}.{ext}`.
    #[serde(default)]
    pub output_key: Option<String>,
    /// CSV columns in order; default every key, in order of first appearance.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Neutralize CSV cells a spreadsheet would run as formulas (OWASP: a leading `'`).
    #[serde(default = "yes")]
    pub escape_formulas: bool,
}

fn yes() -> bool {
    true
}

/// Writes exports to a [`Storage`].
#[derive(Debug, Clone)]
pub struct ExportProcessor {
    storage: Storage,
}

impl ExportProcessor {
    /// An export processor writing to `storage`.
    pub fn new(storage: Storage) -> Self {
        ExportProcessor { storage }
    }

    async fn records(&self, job: &ExportJob) -> Result<Vec<Value>, ProcessError> {
        match (&job.records, &job.input_key) {
            (Some(records), None) => Ok(records.clone()),
            (None, Some(key)) => {
                let bytes = self.storage.get(key).await.map_err(storage_error)?;
                off_thread(move || parse_records(&bytes)).await
            }
            (Some(_), Some(_)) => Err(ProcessError::unrecoverable(
                "give either records or input_key, not both",
            )),
            (None, None) => Err(ProcessError::unrecoverable(
                "give records (inline) or input_key (a storage key)",
            )),
        }
    }
}

fn storage_error(err: StorageError) -> ProcessError {
    match err {
        StorageError::Backend { .. } | StorageError::Directory { .. } => {
            tracing::warn!(error = ?err, "storage failed");
            ProcessError::retry(err.to_string())
        }
        StorageError::InvalidKey { .. } | StorageError::NotFound(_) => {
            ProcessError::unrecoverable(err.to_string())
        }
    }
}

/// A JSON array, or JSON Lines.
fn parse_records(bytes: &[u8]) -> Result<Vec<Value>, ProcessError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ProcessError::unrecoverable(format!("input is not UTF-8: {e}")))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text)
            .map_err(|e| ProcessError::unrecoverable(format!("input is not a JSON array: {e}")));
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| {
                ProcessError::unrecoverable(format!("input line {} is not JSON: {e}", n + 1))
            })
        })
        .collect()
}

/// A CSV cell: strings as they are (but see [`defused`]), null as empty, other values as
/// JSON text.
fn cell(value: Option<&Value>, escape_formulas: bool) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if escape_formulas => defused(s),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Text a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return) with a `'` in front, which makes it plain text (OWASP's advice).
fn defused(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

/// A job id as one safe file name: bytes other than letters, digits, `.`, `_` and `-` as `%XX`.
fn file_name(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-') || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn columns_of(records: &[Value]) -> Result<Vec<String>, ProcessError> {
    let mut columns: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, record) in records.iter().enumerate() {
        let object = as_object(record, n)?;
        for key in object.keys() {
            if seen.insert(key.as_str()) {
                columns.push(key.clone());
            }
        }
    }
    Ok(columns)
}

fn as_object(record: &Value, n: usize) -> Result<&Map<String, Value>, ProcessError> {
    record.as_object().ok_or_else(|| {
        ProcessError::unrecoverable(format!("record {n} is not an object; CSV needs objects"))
    })
}

/// Runs CPU-heavy work on tokio's blocking threads, so it never holds up the pool's thread
/// (and with it the heartbeats that keep leases alive).
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ProcessError> + Send + 'static,
) -> Result<T, ProcessError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ProcessError::retry(format!("export work stopped: {e}")))?
}

/// Encodes `records`, calling `progress` with the number written every [`PROGRESS_EVERY`].
fn encode(
    format: ExportFormat,
    columns: Option<Vec<String>>,
    escape_formulas: bool,
    records: &[Value],
    mut progress: impl FnMut(usize),
) -> Result<Vec<u8>, ProcessError> {
    let mut out: Vec<u8> = Vec::new();
    match format {
        ExportFormat::Csv => {
            let columns = match columns {
                Some(c) => c,
                None => columns_of(records)?,
            };
            let mut writer = csv::Writer::from_writer(&mut out);
            let header = columns.iter().map(|c| {
                if escape_formulas {
                    defused(c)
                } else {
                    c.clone()
                }
            });
            writer
                .write_record(header)
                .map_err(|e| ProcessError::retry(e.to_string()))?;
            for (n, record) in records.iter().enumerate() {
                let object = as_object(record, n)?;
                writer
                    .write_record(columns.iter().map(|c| cell(object.get(c), escape_formulas)))
                    .map_err(|e| ProcessError::retry(e.to_string()))?;
                if (n + 1) % PROGRESS_EVERY == 0 {
                    progress(n + 1);
                }
            }
            writer.flush()?;
        }
        ExportFormat::Jsonl => {
            for (n, record) in records.iter().enumerate() {
                serde_json::to_writer(&mut out, record)?;
                out.push(b'\n');
                if (n + 1) % PROGRESS_EVERY == 0 {
                    progress(n + 1);
                }
            }
        }
        ExportFormat::Json => serde_json::to_writer(&mut out, records)?,
    }
    Ok(out)
}

#[async_trait]
impl Processor for ExportProcessor {
    async fn process(&self, ctx: JobContext) -> Result<Value, ProcessError> {
        let job: ExportJob = ctx.data()?;
        let output_key = job.output_key.clone().unwrap_or_else(|| {
            format!("exports/{}.{}", file_name(ctx.id()), job.format.extension())
        });
        let records = self.records(&job).await?;
        ctx.progress(10).await;
        let count = records.len();
        let total = count.max(1);
        let (written, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let (format, columns, escape) = (job.format, job.columns.clone(), job.escape_formulas);
        let encoding = off_thread(move || {
            encode(format, columns, escape, &records, |n| {
                let _ = written.send(n);
            })
        });
        tokio::pin!(encoding);
        let out = loop {
            tokio::select! {
                Some(n) = reports.recv() => ctx.progress(10 + 80 * n / total).await,
                out = &mut encoding => break out?,
            }
        };
        ctx.progress(90).await;
        let bytes = out.len();
        self.storage
            .put(&output_key, Bytes::from(out))
            .await
            .map_err(storage_error)?;
        ctx.progress(100).await;
        tracing::info!(output_key = %output_key, records = count, bytes, "export written");
        Ok(json!({
            "output_key": output_key,
            "format": job.format.extension(),
            "records": count,
            "bytes": bytes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(records: Value, escape: bool) -> String {
        let records = records.as_array().expect("array").clone();
        let out = encode(ExportFormat::Csv, None, escape, &records, |_| {}).expect("encode");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn csv_cells_that_would_run_as_formulas_are_defused() {
        let records = json!([
            {"=cmd": "=1+1", "b": "+1", "c": "-2", "d": "@SUM(A1)", "e": "\tx", "f": "\rx", "g": -3, "h": "plain"}
        ]);
        assert_eq!(
            csv(records.clone(), true),
            "'=cmd,b,c,d,e,f,g,h\n'=1+1,'+1,'-2,'@SUM(A1),'\tx,\"'\rx\",-3,plain\n"
        );
        assert!(csv(records, false).contains("=1+1,+1,-2"), "opted out");
    }

    #[test]
    fn a_job_id_becomes_one_safe_file_name() {
        assert_eq!(file_name("order-42_a.b"), "order-42_a.b");
        assert_eq!(file_name("../x/y"), "%2E.%2Fx%2Fy");
        assert_eq!(file_name("a b:é"), "a%20b%3A%C3%A9");
    }
}
