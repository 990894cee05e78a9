//! The `export` processor: writes records (given in the job, or read from a storage key) as
//! CSV, JSON Lines or a JSON array to storage, optionally gzipped, reporting progress; returns
//! where it wrote and, when asked, announces the file on `notifications`.
//!
//! A storage input is streamed: chunks flow from storage through a parser and an encoder on a
//! blocking thread to a multipart upload, each hop a small bounded channel, so a million
//! records take no more memory than ten. A CSV without `columns` reads its input twice (the
//! first pass finds the columns). A failed export leaves no partial file.

use std::io::{BufRead, BufReader, Read, Write};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer as _, SeqAccess, Visitor};
use serde_json::{Map, Value, json};
use stagehand_actors::pubsub::Notification;
use stagehand_core::pubsub::channels;
use stagehand_core::{JobContext, ProcessError, Processor};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::common::{Resources, file_name, storage_error};
use crate::storage::Storage;

/// Records between two progress reports.
const PROGRESS_EVERY: usize = 1000;
/// The size of the pieces that flow between storage, the encoder and the upload.
const CHUNK: usize = 64 * 1024;
/// Pieces queued at each hop.
const QUEUED: usize = 4;
/// The most CSV columns found in an input.
const MAX_COLUMNS: usize = 10_000;
/// The largest one record (a line, or an array element) may be: memory holds one at a time.
const MAX_RECORD: u64 = 16 * 1024 * 1024;

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

/// Who to tell when the export is ready.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// The user.
    pub user_id: String,
    /// Their address.
    pub email: String,
    /// The subject; default "Your export is ready".
    #[serde(default)]
    pub subject: Option<String>,
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
    /// Where to write; default `exports/{job id}.{ext}` (`.gz` added when gzipped).
    #[serde(default)]
    pub output_key: Option<String>,
    /// A named storage for the output (`storage.buckets`).
    #[serde(default)]
    pub output_bucket: Option<String>,
    /// Gzip the output.
    #[serde(default)]
    pub gzip: bool,
    /// CSV columns in order; default every key, in order of first appearance (a record's own
    /// keys alphabetically).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Neutralize CSV cells a spreadsheet would run as formulas (OWASP: a leading `'`).
    #[serde(default = "yes")]
    pub escape_formulas: bool,
    /// Announce the finished file on `notifications` for this user.
    #[serde(default)]
    pub notify: Option<Notify>,
}

fn yes() -> bool {
    true
}

/// Writes exports to storage.
#[derive(Debug, Clone)]
pub struct ExportProcessor {
    resources: Resources,
}

impl ExportProcessor {
    /// An export processor over `resources`.
    pub fn new(resources: Resources) -> Self {
        ExportProcessor { resources }
    }
}

fn bad(message: impl Into<String>) -> ProcessError {
    ProcessError::unrecoverable(message)
}

/// Where records come from.
enum Source {
    /// Inline in the job.
    Inline(Vec<Value>),
    /// Streamed from storage.
    Stream(ChunkReader),
}

/// Reads the chunks an async task sends, as `std::io::Read` for a blocking thread; counts
/// the bytes it has handed out.
struct ChunkReader {
    chunks: mpsc::Receiver<Result<Bytes, ProcessError>>,
    current: Bytes,
    read: u64,
    failed: Option<ProcessError>,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(err)) => {
                    self.failed = Some(err.clone());
                    return Err(std::io::Error::other(err.message().to_string()));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        self.read += n as u64;
        Ok(n)
    }
}

/// Hands written bytes to an async task in [`CHUNK`]-sized pieces.
struct ChunkWriter {
    out: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        self.out
            .blocking_send(Bytes::from(piece))
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Calls `each` with every record of `source`, then says how many there were. A storage
/// input is a JSON array or JSON Lines.
fn for_each_record(
    source: Source,
    mut each: impl FnMut(Value, &ChunkProgress) -> Result<(), ProcessError>,
) -> Result<usize, ProcessError> {
    let mut count = 0usize;
    match source {
        Source::Inline(records) => {
            let progress = ChunkProgress(0);
            for record in records {
                each(record, &progress)?;
                count += 1;
            }
        }
        Source::Stream(reader) => {
            let mut reader = BufReader::with_capacity(CHUNK, reader);
            // A UTF-8 byte order mark, as some tools write, is not part of the records.
            let bom = match reader.fill_buf() {
                Ok(buf) => buf.starts_with(b"\xEF\xBB\xBF"),
                Err(e) => return Err(read_error(reader.get_ref(), e)),
            };
            if bom {
                reader.consume(3);
            }
            let first = loop {
                let (found, len) = match reader.fill_buf() {
                    Ok(buf) => (
                        buf.iter()
                            .position(|b| !b.is_ascii_whitespace())
                            .map(|i| (i, buf[i])),
                        buf.len(),
                    ),
                    Err(e) => return Err(read_error(reader.get_ref(), e)),
                };
                match found {
                    Some((i, b)) => {
                        reader.consume(i);
                        break Some(b);
                    }
                    None if len == 0 => break None,
                    None => reader.consume(len),
                }
            };
            match first {
                None => {}
                Some(b'[') => count = each_in_array(&mut reader, &mut each)?,
                Some(_) => count = each_line(&mut reader, &mut each)?,
            }
        }
    }
    Ok(count)
}

/// How far into a streamed input the reader is, in bytes.
struct ChunkProgress(u64);

fn read_error(reader: &ChunkReader, err: std::io::Error) -> ProcessError {
    match &reader.failed {
        Some(failed) => failed.clone(),
        None => bad(format!("input cannot be read: {err}")),
    }
}

fn each_line(
    reader: &mut BufReader<ChunkReader>,
    each: &mut impl FnMut(Value, &ChunkProgress) -> Result<(), ProcessError>,
) -> Result<usize, ProcessError> {
    let mut line = Vec::new();
    let mut number = 0usize;
    let mut count = 0usize;
    loop {
        line.clear();
        let n = read_line(reader, &mut line)?;
        if n == 0 {
            return Ok(count);
        }
        number += 1;
        if n as u64 > MAX_RECORD {
            return Err(bad(format!(
                "input line {number} is longer than {MAX_RECORD} bytes (the largest record)"
            )));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: Value = serde_json::from_slice(&line)
            .map_err(|e| bad(format!("input line {number} is not JSON: {e}")))?;
        each(record, &ChunkProgress(reader.get_ref().read))?;
        count += 1;
    }
}

/// Reads up to and including the next newline into `line`, but no more than one byte past
/// [`MAX_RECORD`]; returns how many bytes it read.
fn read_line(
    reader: &mut BufReader<ChunkReader>,
    line: &mut Vec<u8>,
) -> Result<usize, ProcessError> {
    let mut read = 0;
    loop {
        let room = (MAX_RECORD as usize + 1).saturating_sub(line.len());
        let (done, used) = match reader.fill_buf() {
            Ok([]) => return Ok(read),
            Ok(buf) => {
                let (done, used) = match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => (true, i + 1),
                    None => (false, buf.len()),
                };
                line.extend_from_slice(&buf[..used.min(room)]);
                (done, used)
            }
            Err(e) => return Err(read_error(reader.get_ref(), e)),
        };
        reader.consume(used);
        read += used;
        if done || line.len() > MAX_RECORD as usize {
            return Ok(read);
        }
    }
}

fn each_in_array(
    reader: &mut BufReader<ChunkReader>,
    each: &mut impl FnMut(Value, &ChunkProgress) -> Result<(), ProcessError>,
) -> Result<usize, ProcessError> {
    struct Each<'a, F> {
        each: &'a mut F,
        count: usize,
        failed: Option<ProcessError>,
        progress: &'a dyn Fn() -> u64,
    }
    impl<'de, F: FnMut(Value, &ChunkProgress) -> Result<(), ProcessError>> Visitor<'de>
        for &mut Each<'_, F>
    {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON array of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(record) = seq.next_element::<Value>()? {
                if let Err(err) = (self.each)(record, &ChunkProgress((self.progress)())) {
                    self.failed = Some(err);
                    return Err(serde::de::Error::custom("stopped"));
                }
                self.count += 1;
            }
            Ok(())
        }
    }
    impl<'de, F: FnMut(Value, &ChunkProgress) -> Result<(), ProcessError>> DeserializeSeed<'de>
        for &mut Each<'_, F>
    {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    // The reader's count is behind a shared cell so the visitor can read it while the
    // deserializer holds the reader.
    let read = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let since = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let counted = CountingReader {
        inner: reader,
        read: std::rc::Rc::clone(&read),
        since_record: std::rc::Rc::clone(&since),
    };
    let progress = || {
        since.set(0);
        read.get()
    };
    let mut visitor = Each {
        each,
        count: 0,
        failed: None,
        progress: &progress,
    };
    let mut de = serde_json::Deserializer::from_reader(counted);
    let parsed = (&mut de)
        .deserialize_seq(&mut visitor)
        .and_then(|()| de.end());
    if let Some(failed) = visitor.failed.take() {
        return Err(failed);
    }
    parsed.map_err(|e| {
        if e.is_io() && since.get() > MAX_RECORD {
            bad(format!(
                "input record {} is larger than {MAX_RECORD} bytes (the largest record)",
                visitor.count + 1
            ))
        } else {
            bad(format!("input is not a JSON array: {e}"))
        }
    })?;
    Ok(visitor.count)
}

struct CountingReader<'a> {
    inner: &'a mut BufReader<ChunkReader>,
    read: std::rc::Rc<std::cell::Cell<u64>>,
    /// Bytes read since the last record was handed out.
    since_record: std::rc::Rc<std::cell::Cell<u64>>,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.since_record.get() > MAX_RECORD {
            return Err(std::io::Error::other("a record is too large"));
        }
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        self.since_record.set(self.since_record.get() + n as u64);
        Ok(n)
    }
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

fn as_object(record: &Value, n: usize) -> Result<&Map<String, Value>, ProcessError> {
    record
        .as_object()
        .ok_or_else(|| bad(format!("record {n} is not an object; CSV needs objects")))
}

/// Every key of the records, in order of first appearance.
fn collect_columns(source: Source) -> Result<Vec<String>, ProcessError> {
    let mut columns: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut n = 0usize;
    for_each_record(source, |record, _| {
        for key in as_object(&record, n)?.keys() {
            if !seen.contains(key) {
                if columns.len() == MAX_COLUMNS {
                    return Err(bad(format!(
                        "the records have more than {MAX_COLUMNS} distinct keys; give columns"
                    )));
                }
                seen.insert(key.clone());
                columns.push(key.clone());
            }
        }
        n += 1;
        Ok(())
    })?;
    Ok(columns)
}

/// What the encoder needs to know.
struct Encoding {
    format: ExportFormat,
    columns: Vec<String>,
    escape_formulas: bool,
    gzip: bool,
    /// The input's size, for progress (0: count records instead).
    input_bytes: u64,
    total_records: usize,
}

/// Encodes every record of `source` into `out`; sends progress (10–90) now and then.
fn encode(
    source: Source,
    encoding: Encoding,
    out: ChunkWriter,
    progress: mpsc::UnboundedSender<u64>,
) -> Result<usize, ProcessError> {
    let sink = if encoding.gzip {
        Sink::Gzip(flate2::write::GzEncoder::new(
            out,
            flate2::Compression::default(),
        ))
    } else {
        Sink::Plain(out)
    };
    let write_failed = |e: std::io::Error| ProcessError::retry(format!("export write: {e}"));
    let report = |n: usize, at: &ChunkProgress| {
        if n.is_multiple_of(PROGRESS_EVERY) {
            let fraction = if encoding.input_bytes > 0 {
                at.0 as f64 / encoding.input_bytes as f64
            } else {
                n as f64 / encoding.total_records.max(1) as f64
            };
            let _ = progress.send(10 + (80.0 * fraction.min(1.0)) as u64);
        }
    };
    let count = match encoding.format {
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(sink);
            let esc = encoding.escape_formulas;
            let header = encoding
                .columns
                .iter()
                .map(|c| if esc { defused(c) } else { c.clone() });
            writer
                .write_record(header)
                .map_err(|e| ProcessError::retry(e.to_string()))?;
            let mut n = 0usize;
            let count = for_each_record(source, |record, at| {
                let object = as_object(&record, n)?;
                writer
                    .write_record(encoding.columns.iter().map(|c| cell(object.get(c), esc)))
                    .map_err(|e| ProcessError::retry(format!("export write: {e}")))?;
                n += 1;
                report(n, at);
                Ok(())
            })?;
            let sink = writer
                .into_inner()
                .map_err(|e| ProcessError::retry(format!("export write: {e}")))?;
            sink.finish().map_err(write_failed)?;
            count
        }
        ExportFormat::Jsonl | ExportFormat::Json => {
            let array = encoding.format == ExportFormat::Json;
            let mut sink = std::io::BufWriter::with_capacity(CHUNK, sink);
            if array {
                sink.write_all(b"[").map_err(write_failed)?;
            }
            let mut n = 0usize;
            let count = for_each_record(source, |record, at| {
                if array && n > 0 {
                    sink.write_all(b",").map_err(write_failed)?;
                }
                serde_json::to_writer(&mut sink, &record)
                    .map_err(|e| ProcessError::retry(format!("export write: {e}")))?;
                if !array {
                    sink.write_all(b"\n").map_err(write_failed)?;
                }
                n += 1;
                report(n, at);
                Ok(())
            })?;
            if array {
                sink.write_all(b"]").map_err(write_failed)?;
            }
            let sink = sink
                .into_inner()
                .map_err(|e| write_failed(e.into_error()))?;
            sink.finish().map_err(write_failed)?;
            count
        }
    };
    Ok(count)
}

/// The encoder's output: plain, or through gzip.
enum Sink {
    Plain(ChunkWriter),
    Gzip(flate2::write::GzEncoder<ChunkWriter>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
        }
    }
}

impl Sink {
    /// Sends the last bytes (and the gzip trailer) to the upload.
    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(mut w) => w.flush(),
            Sink::Gzip(w) => w.finish()?.flush(),
        }
    }
}

impl ExportProcessor {
    /// The storage input as a stream of chunks feeding a [`ChunkReader`].
    async fn open(&self, key: &str) -> Result<(u64, ChunkReader), ProcessError> {
        let (size, stream) = self
            .resources
            .storage
            .stream(key)
            .await
            .map_err(storage_error)?;
        let (tx, rx) = mpsc::channel(QUEUED);
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(storage_error);
                let stop = chunk.is_err();
                if tx.send(chunk).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok((
            size,
            ChunkReader {
                chunks: rx,
                current: Bytes::new(),
                read: 0,
                failed: None,
            },
        ))
    }

    async fn source(&self, job: &ExportJob) -> Result<(Source, u64, usize), ProcessError> {
        match (&job.records, &job.input_key) {
            (Some(records), None) => Ok((Source::Inline(records.clone()), 0, records.len())),
            (None, Some(key)) => {
                let (size, reader) = self.open(key).await?;
                Ok((Source::Stream(reader), size, 0))
            }
            (Some(_), Some(_)) => Err(bad("give either records or input_key, not both")),
            (None, None) => Err(bad("give records (inline) or input_key (a storage key)")),
        }
    }

    async fn columns(&self, job: &ExportJob) -> Result<Vec<String>, ProcessError> {
        if let Some(columns) = &job.columns {
            return Ok(columns.clone());
        }
        if job.format != ExportFormat::Csv {
            return Ok(Vec::new());
        }
        let (source, _, _) = self.source(job).await?;
        self.resources
            .cpu
            .run(move |_| collect_columns(source))
            .await
    }

    /// Streams the encoded output of `job` into `output_key`; says how many records and
    /// bytes were written.
    async fn write(
        &self,
        ctx: &JobContext,
        job: &ExportJob,
        storage: &Storage,
        output_key: &str,
    ) -> Result<(usize, u64), ProcessError> {
        let columns = self.columns(job).await?;
        let (source, input_bytes, total_records) = self.source(job).await?;
        ctx.progress(10).await;
        let mut upload = storage.writer(output_key).map_err(storage_error)?;
        let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(QUEUED);
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
        let encoding = Encoding {
            format: job.format,
            columns,
            escape_formulas: job.escape_formulas,
            gzip: job.gzip,
            input_bytes,
            total_records,
        };
        let writer = ChunkWriter {
            out: out_tx,
            buffer: Vec::with_capacity(CHUNK),
        };
        let encoding = self
            .resources
            .cpu
            .run(move |_| encode(source, encoding, writer, progress_tx));
        tokio::pin!(encoding);
        let mut written = 0u64;
        let mut encoded = None;
        let mut upload_error = None;
        loop {
            tokio::select! {
                piece = out_rx.recv() => match piece {
                    Some(piece) => {
                        written += piece.len() as u64;
                        if upload_error.is_none()
                            && let Err(e) = upload.write_all(&piece).await
                        {
                            upload_error = Some(e);
                            out_rx.close();
                        }
                    }
                    None if encoded.is_some() => break,
                    None => {
                        // The encoder is done sending; wait for its verdict.
                        encoded = Some((&mut encoding).await);
                        break;
                    }
                },
                Some(p) = progress_rx.recv() => ctx.progress(p).await,
                result = &mut encoding, if encoded.is_none() => encoded = Some(result),
            }
        }
        let count = match (encoded, upload_error) {
            (Some(Ok(count)), None) => count,
            (_, Some(e)) => {
                let _ = upload.abort().await;
                return Err(ProcessError::retry(format!(
                    "storage write '{output_key}': {e}"
                )));
            }
            (Some(Err(err)), None) => {
                let _ = upload.abort().await;
                return Err(err);
            }
            (None, None) => unreachable!("the loop ends with the encoder's verdict"),
        };
        ctx.progress(90).await;
        upload
            .shutdown()
            .await
            .map_err(|e| ProcessError::retry(format!("storage write '{output_key}': {e}")))?;
        Ok((count, written))
    }

    async fn announce(&self, notify: &Notify, output_key: &str) -> Result<(), ProcessError> {
        let Some(pubsub) = &self.resources.pubsub else {
            return Err(bad("notify: this service has no pub/sub"));
        };
        let message = Notification {
            user_id: notify.user_id.clone(),
            email: notify.email.clone(),
            subject: notify
                .subject
                .clone()
                .unwrap_or_else(|| "Your export is ready".into()),
            text: Some(format!("Your export is ready: {output_key}")),
            html: None,
            template: None,
            context: None,
        };
        pubsub
            .publish(channels::NOTIFICATIONS, &message)
            .await
            .map(|_| ())
            .map_err(|e| {
                ProcessError::retry(format!("export ready, but the notification failed: {e}"))
            })
    }
}

#[async_trait]
impl Processor for ExportProcessor {
    async fn process(&self, ctx: JobContext) -> Result<Value, ProcessError> {
        ctx.progress(0).await;
        let job: ExportJob = ctx.data()?;
        if let Some(notify) = &job.notify
            && (notify.user_id.is_empty() || notify.email.parse::<lettre::Address>().is_err())
        {
            return Err(bad("notify needs a user_id and a valid email address"));
        }
        if job.columns.as_ref().is_some_and(Vec::is_empty) {
            return Err(bad("columns is empty: name at least one, or leave it out"));
        }
        let storage = self.resources.bucket(job.output_bucket.as_deref())?.clone();
        let output_key = job.output_key.clone().unwrap_or_else(|| {
            let gz = if job.gzip { ".gz" } else { "" };
            format!(
                "exports/{}.{}{gz}",
                file_name(ctx.id()),
                job.format.extension()
            )
        });
        let (count, bytes) = self.write(&ctx, &job, &storage, &output_key).await?;
        if let Some(notify) = &job.notify {
            self.announce(notify, &output_key).await?;
        }
        ctx.progress(100).await;
        tracing::info!(output_key = %output_key, records = count, bytes, "export written");
        Ok(json!({
            "output_key": output_key,
            "format": job.format.extension(),
            "gzip": job.gzip,
            "records": count,
            "bytes": bytes,
            "notified": job.notify.as_ref().map(|n| n.user_id.clone()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(records: Value, escape: bool) -> String {
        let records = records.as_array().expect("array").clone();
        let columns = collect_columns(Source::Inline(records.clone())).expect("columns");
        let (tx, mut rx) = mpsc::channel(1024);
        let (progress, _) = mpsc::unbounded_channel();
        let encoding = Encoding {
            format: ExportFormat::Csv,
            columns,
            escape_formulas: escape,
            gzip: false,
            input_bytes: 0,
            total_records: records.len(),
        };
        let writer = ChunkWriter {
            out: tx,
            buffer: Vec::new(),
        };
        encode(Source::Inline(records), encoding, writer, progress).expect("encode");
        let mut out = Vec::new();
        while let Ok(piece) = rx.try_recv() {
            out.extend_from_slice(&piece);
        }
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
}
