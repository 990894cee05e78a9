//! A 12-megapixel JPEG to an 800-pixel-wide thumbnail (JPEG and WebP, quality 80), one image
//! at a time: milliseconds per image on the clock and in CPU time (the JPEG decoder runs its
//! colour components on helper threads, so CPU time is the per-core figure).
//! `benches/images/compare.sh` runs sharp (libvips) on the same file in the same run.
//!
//! `cargo bench --bench image_thumbnail [-- INPUT.jpg]`; without an input it makes a
//! photo-like 4000x3000 JPEG (quality 90) at `target/bench-12mp.jpg`.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Instant;

use stagehand::config::ImageSettings;
use stagehand::processors::image::{ImageJob, render};

fn photo_jpeg(path: &PathBuf) -> Vec<u8> {
    if let Ok(bytes) = std::fs::read(path) {
        return bytes;
    }
    let (w, h) = (4000u32, 3000u32);
    let mut rng = fastrand::Rng::with_seed(7);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let wave = ((fx * 40.0).sin() * (fy * 30.0).cos() * 40.0) as i32;
        let noise = rng.i32(-12..=12);
        let c = |base: f32| ((base * 255.0) as i32 + wave + noise).clamp(0, 255) as u8;
        image::Rgb([c(fx), c(fy), c(1.0 - fx)])
    });
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .expect("encode");
    let bytes = out.into_inner();
    std::fs::write(path, &bytes).expect("write the input");
    bytes
}

/// User and system CPU time of the whole process (every thread), in seconds.
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(usage.user_time()) + secs(usage.system_time())
}

fn main() {
    let input = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench-12mp.jpg"));
    let bytes = photo_jpeg(&input);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    let limits = ImageSettings::default();
    println!(
        "input {} ({} bytes), {rounds} images each, one thread",
        input.display(),
        bytes.len()
    );
    for format in ["jpeg", "webp"] {
        let job: ImageJob = serde_json::from_value(serde_json::json!({
            "input_key": "x",
            "operations": [
                {"op": "resize", "width": 800},
                {"op": "format", "format": format, "quality": 80}
            ]
        }))
        .expect("job");
        let first = render(&bytes, &job, &limits).expect("render");
        let (start, cpu_start) = (Instant::now(), cpu_seconds());
        for _ in 0..rounds {
            std::hint::black_box(render(&bytes, &job, &limits).expect("render"));
        }
        let per = start.elapsed().as_secs_f64() / rounds as f64;
        let cpu = (cpu_seconds() - cpu_start) / rounds as f64;
        println!(
            "stagehand  {format:<4} {}x{} {:>7} bytes  {:6.1} ms/image  {:6.1} ms cpu/image  {:6.1} images/s/core",
            first.width,
            first.height,
            first.bytes.len(),
            per * 1000.0,
            cpu * 1000.0,
            1.0 / cpu
        );
    }
}
