//! The `image-processing` processor: reads an image from storage, applies the job's
//! operations in order, encodes it and writes it back (to a named bucket if asked).
//!
//! Job data follows the seed (`input_key`, also accepted as `fileId`; `operations`;
//! `output_key`; `output_bucket`). Each operation names itself with `"op"`:
//!
//! | op | arguments |
//! |---|---|
//! | `resize` | `width`, `height` (either or both), `fit` = cover, contain, fill, inside, outside; `upscale` (default false); `background` for contain |
//! | `thumbnail` | `width`, `height` (default the width): inside, never larger |
//! | `crop` | `left`, `top`, `width`, `height` |
//! | `rotate` | `degrees`: 90, 180 or 270 |
//! | `flip`, `flop` | mirror top-bottom, left-right |
//! | `grayscale` | |
//! | `blur` | `sigma` 0.3–100 |
//! | `sharpen` | `sigma` 0.3–10, `threshold` 0–255 |
//! | `brightness` | `value` -255–255 (added to each channel) |
//! | `contrast` | `value` -100–100 (percent) |
//! | `format` | `format` = jpeg, png, webp; `quality` 1–100 (default 80); `lossless` (webp) |
//!
//! The image is turned upright from its EXIF orientation first (`auto_orient: false` keeps it
//! as stored). Width, height, pixels and bytes are checked against `[processors.image]`
//! before decoding, and every size an operation would make is checked before it is made. A
//! file that is no image, is cut short, or claims to be what it is not fails at once with
//! the reason. JPEG and PNG are encoded by the `image` crate, WebP by libwebp (lossy at a
//! quality, or lossless); PNG is always lossless.

mod decode;
mod encode;
mod ops;
mod resize;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use stagehand_core::{JobContext, ProcessError, Processor};

pub use ops::{Fit, Format, Op};

use super::common::{Resources, Work, file_name, run_reporting, step_progress, storage_error};
use ops::Bounds;

/// An `image-processing` job's data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageJob {
    /// The storage key of the image (the seed's `fileId`).
    #[serde(alias = "fileId", alias = "file_id")]
    pub input_key: String,
    /// A named storage to read from (`storage.buckets`).
    #[serde(default)]
    pub input_bucket: Option<String>,
    /// What to do, in order.
    #[serde(default)]
    pub operations: Vec<Op>,
    /// Where to write; default `images/{job id}.{format}`.
    #[serde(default, alias = "outputKey")]
    pub output_key: Option<String>,
    /// A named storage to write to (`storage.buckets`).
    #[serde(default, alias = "outputBucket")]
    pub output_bucket: Option<String>,
    /// Turn the image upright from its EXIF orientation first (default true).
    #[serde(default = "yes")]
    pub auto_orient: bool,
}

fn yes() -> bool {
    true
}

/// Processes images.
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    resources: Resources,
}

/// An image a job made, before it is written.
#[derive(Debug, Clone)]
pub struct Made {
    /// The encoded bytes.
    pub bytes: Vec<u8>,
    /// Its width.
    pub width: u32,
    /// Its height.
    pub height: u32,
    /// Its encoding.
    pub format: Format,
    /// The input's width, height and format.
    pub input: (u32, u32, &'static str),
}

impl ImageProcessor {
    /// An image processor over `resources`.
    pub fn new(resources: Resources) -> Self {
        ImageProcessor { resources }
    }

    fn bounds(&self) -> Bounds {
        let s = &self.resources.settings.image;
        Bounds {
            max_width: s.max_width,
            max_height: s.max_height,
            max_pixels: s.max_pixels,
        }
    }
}

/// How much smaller than the upright source the first operation makes the image, when it is
/// a resize (so a JPEG can be decoded at a reduced scale); 1 otherwise.
fn first_shrink(ops: &[Op], upright: (u32, u32)) -> f64 {
    let resize = ops.iter().find(|op| !matches!(op, Op::Format { .. }));
    let plan = match resize {
        Some(Op::Resize {
            width,
            height,
            fit,
            upscale,
            ..
        }) => resize::plan(upright, *width, *height, *fit, *upscale),
        Some(Op::Thumbnail { width, height }) => resize::plan(
            upright,
            Some(*width),
            Some(height.unwrap_or(*width)),
            Fit::Inside,
            false,
        ),
        _ => return 1.0,
    };
    // A pixel to spare on each side, so rounding never leaves the decode short of the plan.
    let (sw, sh) = (
        f64::from(plan.scaled.0) + 1.0,
        f64::from(plan.scaled.1) + 1.0,
    );
    (sw / f64::from(upright.0))
        .max(sh / f64::from(upright.1))
        .min(1.0)
}

/// Does what an image job does between reading its input and writing its output, on bytes in
/// memory and on the calling thread (CPU work: call it from a blocking thread). For embedding,
/// and for the benchmark beside sharp.
pub fn render(
    input: &[u8],
    job: &ImageJob,
    limits: &crate::config::ImageSettings,
) -> Result<Made, ProcessError> {
    ops::validate(&job.operations, None)?;
    let bounds = Bounds {
        max_width: limits.max_width,
        max_height: limits.max_height,
        max_pixels: limits.max_pixels,
    };
    run(input, job, &bounds, None)
}

fn run(
    input: &[u8],
    job: &ImageJob,
    bounds: &Bounds,
    work: Option<&Work>,
) -> Result<Made, ProcessError> {
    let check = || work.map_or(Ok(()), Work::check);
    let stripped;
    let input = if image::guess_format(input).ok() == Some(image::ImageFormat::Png) {
        stripped = decode::without_png_metadata(input);
        &stripped[..]
    } else {
        input
    };
    let header = decode::header(input, bounds)?;
    let output = ops::validate(&job.operations, header.output())?;
    let upright = if job.auto_orient {
        header.upright()
    } else {
        header.size
    };
    let shrink = first_shrink(&job.operations, upright);
    check()?;
    let mut image = decode::decode(input, &header, bounds, shrink, job.auto_orient)?;
    let total = job.operations.len() + 1;
    for (i, op) in job.operations.iter().enumerate() {
        check()?;
        image = ops::apply(image, op, bounds)?;
        if let Some(work) = work {
            work.report(step_progress(i + 1, total));
        }
    }
    check()?;
    let bytes = encode::encode(&image, &output)?;
    Ok(Made {
        bytes,
        width: image.width(),
        height: image.height(),
        format: output.format,
        input: (
            header.size.0,
            header.size.1,
            header.output().map_or("gif", Format::name),
        ),
    })
}

#[async_trait]
impl Processor for ImageProcessor {
    async fn process(&self, ctx: JobContext) -> Result<Value, ProcessError> {
        ctx.progress(0).await;
        let job: ImageJob = ctx.data()?;
        // Arguments are checked before the input is read (the output format is found later).
        ops::validate(&job.operations, None)?;
        let source = self.resources.bucket(job.input_bucket.as_deref())?;
        let target = self.resources.bucket(job.output_bucket.as_deref())?.clone();
        let max = self.resources.settings.image.max_input_bytes;
        let input = source
            .get_limited(&job.input_key, max)
            .await
            .map_err(storage_error)?;
        ctx.progress(10).await;
        let bounds = self.bounds();
        let work_job = job.clone();
        let made = run_reporting(&ctx, &self.resources.cpu, move |work| {
            run(&input, &work_job, &bounds, Some(work))
        })
        .await?;
        let output_key = job
            .output_key
            .clone()
            .unwrap_or_else(|| format!("images/{}.{}", file_name(ctx.id()), made.format.name()));
        let size = made.bytes.len();
        target
            .put(&output_key, Bytes::from(made.bytes))
            .await
            .map_err(storage_error)?;
        ctx.progress(100).await;
        Ok(json!({
            "output_key": output_key,
            "output_bucket": job.output_bucket,
            "width": made.width,
            "height": made.height,
            "format": made.format.name(),
            "bytes": size,
            "input": {"width": made.input.0, "height": made.input.1, "format": made.input.2},
        }))
    }
}
