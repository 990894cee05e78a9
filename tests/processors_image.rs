//! The `image-processing` processor through the real binary: operations, formats, EXIF
//! orientation, buckets, and a corpus of hostile files that must each fail at once with a
//! reason while the process stays small.

mod common;

use std::io::Cursor;

use common::Service;
use image::{DynamicImage, GenericImageView, ImageFormat, RgbImage};
use serde_json::{Value, json};

/// Queue settings: no retries to wait for, so a failure shows at once.
const TOML: &str = r#"
[queues.image-processing.defaults]
attempts = 2
backoff = { type = "fixed", delay_ms = 10 }
remove_on_fail = false
remove_on_complete = false
"#;

/// A photo-like picture: gradients, waves and noise (so it compresses as photos do).
fn photo(width: u32, height: u32) -> RgbImage {
    let mut rng = fastrand::Rng::with_seed(7);
    RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let wave = ((fx * 40.0).sin() * (fy * 30.0).cos() * 40.0) as i32;
        let noise = rng.i32(-12..=12);
        let c = |base: f32| (base * 255.0) as i32 + wave + noise;
        image::Rgb([
            c(fx).clamp(0, 255) as u8,
            c(fy).clamp(0, 255) as u8,
            c(1.0 - fx).clamp(0, 255) as u8,
        ])
    })
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    encode(
        &DynamicImage::ImageRgb8(photo(width, height)),
        ImageFormat::Jpeg,
    )
}

/// `jpeg` with an EXIF APP1 segment saying orientation `value` (6: turn 90 degrees clockwise).
fn with_orientation(jpeg: &[u8], value: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&value.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn put(service: &Service, key: &str, bytes: &[u8]) {
    let path = service.data_file(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(path, bytes).expect("write input");
}

async fn run(service: &Service, data: Value, state: &str) -> Value {
    let id = service
        .api
        .add("image-processing", json!({"name": "img", "data": data}))
        .await;
    service.api.wait_state("image-processing", &id, state).await
}

fn read_output(service: &Service, key: &str) -> (DynamicImage, ImageFormat) {
    let bytes = std::fs::read(service.data_file(key)).expect("output written");
    let format = image::guess_format(&bytes).expect("an image");
    (image::load_from_memory(&bytes).expect("decodes"), format)
}

#[tokio::test]
async fn a_photo_is_resized_reencoded_and_its_progress_and_result_reported() {
    let service = Service::start(TOML).await;
    put(&service, "uploads/look.jpg", &jpeg(1600, 1200));
    let job = run(
        &service,
        json!({
            "fileId": "uploads/look.jpg",
            "operations": [
                {"op": "resize", "width": 400, "fit": "inside"},
                {"op": "format", "format": "webp", "quality": 70}
            ],
            "outputKey": "thumbs/look.webp"
        }),
        "completed",
    )
    .await;
    assert_eq!(job["progress"], 100, "{job}");
    let result = &job["return_value"];
    assert_eq!(result["output_key"], "thumbs/look.webp");
    assert_eq!(
        (result["width"].clone(), result["height"].clone()),
        (json!(400), json!(300))
    );
    assert_eq!(result["format"], "webp");
    assert_eq!(
        result["input"],
        json!({"width": 1600, "height": 1200, "format": "jpeg"})
    );
    let (out, format) = read_output(&service, "thumbs/look.webp");
    assert_eq!(format, ImageFormat::WebP);
    assert_eq!(out.dimensions(), (400, 300));
    let bytes = std::fs::metadata(service.data_file("thumbs/look.webp"))
        .expect("file")
        .len();
    assert_eq!(result["bytes"], bytes);
    // Lossy WebP of a photo is far smaller than its pixels.
    assert!(bytes < 400 * 300 * 3 / 4, "{bytes} bytes: not lossy");
}

#[tokio::test]
async fn fits_crops_turns_and_filters_make_the_sizes_and_pixels_asked_for() {
    let service = Service::start(TOML).await;
    put(
        &service,
        "in/wide.png",
        &encode(&DynamicImage::ImageRgb8(photo(600, 400)), ImageFormat::Png),
    );
    let cases = [
        (
            json!([{"op": "resize", "width": 200, "height": 200, "fit": "cover"}]),
            (200, 200),
        ),
        (
            json!([{"op": "resize", "width": 200, "height": 200, "fit": "contain"}]),
            (200, 200),
        ),
        (
            json!([{"op": "resize", "width": 200, "height": 200, "fit": "inside"}]),
            (200, 133),
        ),
        (
            json!([{"op": "resize", "width": 200, "height": 200, "fit": "outside"}]),
            (300, 200),
        ),
        (
            json!([{"op": "resize", "width": 200, "height": 50, "fit": "fill"}]),
            (200, 50),
        ),
        (json!([{"op": "resize", "width": 1200}]), (600, 400)),
        (
            json!([{"op": "resize", "width": 1200, "upscale": true}]),
            (1200, 800),
        ),
        (json!([{"op": "thumbnail", "width": 100}]), (100, 67)),
        (
            json!([{"op": "crop", "left": 10, "top": 20, "width": 100, "height": 50}, {"op": "rotate", "degrees": 90}]),
            (50, 100),
        ),
        (
            json!([{"op": "flip"}, {"op": "flop"}, {"op": "blur", "sigma": 2}, {"op": "sharpen"}, {"op": "brightness", "value": 20}, {"op": "contrast", "value": 10}]),
            (600, 400),
        ),
    ];
    for (n, (ops, size)) in cases.iter().enumerate() {
        let key = format!("out/{n}.png");
        let job = run(
            &service,
            json!({"input_key": "in/wide.png", "operations": ops, "output_key": key}),
            "completed",
        )
        .await;
        let (out, format) = read_output(&service, &key);
        assert_eq!(format, ImageFormat::Png, "the input's format is kept");
        assert_eq!(out.dimensions(), *size, "{ops}");
        assert_eq!(
            (
                job["return_value"]["width"].clone(),
                job["return_value"]["height"].clone()
            ),
            (json!(size.0), json!(size.1))
        );
    }
    let job = run(
        &service,
        json!({"input_key": "in/wide.png", "operations": [{"op": "grayscale"}, {"op": "format", "format": "jpeg", "quality": 90}], "output_key": "out/gray.jpg"}),
        "completed",
    )
    .await;
    assert_eq!(job["return_value"]["format"], "jpeg");
    let (out, _) = read_output(&service, "out/gray.jpg");
    let rgb = out.to_rgb8();
    assert!(rgb.pixels().all(|p| p[0] == p[1] && p[1] == p[2]), "grey");
}

#[tokio::test]
async fn a_phone_photo_is_turned_upright_from_its_exif_orientation() {
    let service = Service::start(TOML).await;
    put(
        &service,
        "in/phone.jpg",
        &with_orientation(&jpeg(300, 200), 6),
    );
    run(
        &service,
        json!({"input_key": "in/phone.jpg", "output_key": "out/upright.jpg"}),
        "completed",
    )
    .await;
    assert_eq!(
        read_output(&service, "out/upright.jpg").0.dimensions(),
        (200, 300)
    );
    run(
        &service,
        json!({"input_key": "in/phone.jpg", "output_key": "out/as-stored.jpg", "auto_orient": false}),
        "completed",
    )
    .await;
    assert_eq!(
        read_output(&service, "out/as-stored.jpg").0.dimensions(),
        (300, 200)
    );
    // A large JPEG made much smaller is decoded at a reduced scale: the size still comes out
    // exact, upright.
    put(
        &service,
        "in/big.jpg",
        &with_orientation(&jpeg(2400, 1600), 6),
    );
    let job = run(
        &service,
        json!({"input_key": "in/big.jpg", "operations": [{"op": "resize", "width": 300, "height": 300, "fit": "cover"}], "output_key": "out/big.jpg"}),
        "completed",
    )
    .await;
    assert_eq!(
        read_output(&service, "out/big.jpg").0.dimensions(),
        (300, 300),
        "{job}"
    );
}

#[tokio::test]
async fn outputs_go_to_a_named_bucket_and_an_unknown_bucket_fails_at_once() {
    let thumbs = tempfile::tempdir().expect("bucket");
    let toml = format!(
        "{TOML}\n[storage.buckets]\nthumbs = \"{}\"\n",
        thumbs.path().display()
    );
    let service = Service::start(&toml).await;
    put(&service, "in/a.jpg", &jpeg(64, 48));
    let job = run(
        &service,
        json!({"input_key": "in/a.jpg", "output_key": "a.jpg", "outputBucket": "thumbs"}),
        "completed",
    )
    .await;
    assert_eq!(job["return_value"]["output_bucket"], "thumbs");
    assert!(thumbs.path().join("a.jpg").exists());
    let job = run(
        &service,
        json!({"input_key": "in/a.jpg", "output_key": "a.jpg", "output_bucket": "nope"}),
        "failed",
    )
    .await;
    assert_eq!(job["attempts_made"], 1, "{job}");
    let reason = job["failed_reason"].as_str().expect("reason");
    assert!(reason.contains("no storage bucket 'nope'"), "{reason}");
}

/// A PNG whose header claims `width` x `height` with `idat` as its only data.
fn png_claiming(width: u32, height: u32, idat: &[u8]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A JPEG whose frame header says `width` x `height` (its data is a small real image's).
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = jpeg(16, 16);
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline frame header");
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn each_hostile_file_fails_at_once_with_its_reason_and_the_process_stays_small() {
    let toml = format!(
        "{TOML}\n[processors.image]\nmax_pixels = 4000000\nmax_width = 4000\nmax_height = 4000\nmax_input_bytes = 2000000\n"
    );
    let service = Service::start(&toml).await;
    let real = jpeg(200, 150);
    let gif_screen = {
        // A GIF whose logical screen is 65,535 x 65,535.
        let mut g = encode(&DynamicImage::ImageRgb8(photo(8, 8)), ImageFormat::Gif);
        g[6..8].copy_from_slice(&65_535u16.to_le_bytes());
        g[8..10].copy_from_slice(&65_535u16.to_le_bytes());
        g
    };
    let webp_claim = {
        let mut w = encode(&DynamicImage::ImageRgb8(photo(8, 8)), ImageFormat::WebP);
        // VP8L: 14-bit width-1 and height-1 after the signature byte.
        let at = w
            .windows(4)
            .position(|c| c == b"VP8L")
            .expect("lossless webp")
            + 8;
        let dims: u32 = 0x3FFF | (0x3FFF << 14);
        let old = u32::from_le_bytes([w[at + 1], w[at + 2], w[at + 3], w[at + 4]]);
        let new = (old & !0x0FFF_FFFF) | dims;
        w[at + 1..at + 5].copy_from_slice(&new.to_le_bytes());
        w
    };
    let zeros = vec![0u8; 3_000_000];
    // A 10x10 PNG whose ICC profile inflates to 256 MiB.
    let iccp_bomb = {
        use std::io::Write as _;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let block = vec![0u8; 1 << 20];
        for _ in 0..256 {
            z.write_all(&block).expect("deflate");
        }
        let profile = z.finish().expect("deflate");
        let png = encode(&DynamicImage::ImageRgb8(photo(10, 10)), ImageFormat::Png);
        let mut chunk = b"iCCP".to_vec();
        chunk.extend_from_slice(b"bomb\0\0");
        chunk.extend_from_slice(&profile);
        let mut out = png[..33].to_vec(); // signature and IHDR
        out.extend_from_slice(&((chunk.len() - 4) as u32).to_be_bytes());
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc32(&chunk).to_be_bytes());
        out.extend_from_slice(&png[33..]);
        out
    };
    let cut = |b: Vec<u8>| b[..b.len() * 2 / 3].to_vec();
    // A JPEG whose entropy-coded data breaks off part-way into a run of 0xFF (a marker where
    // none may be); its end marker stays. (Flipped bits that still decode are not noticed by
    // any decoder.)
    let garbled = {
        let mut j = jpeg(400, 300);
        let at = j.len() * 3 / 10;
        j[at..at + 20].fill(0xFF);
        j
    };
    let png = encode(&DynamicImage::ImageRgb8(photo(200, 150)), ImageFormat::Png);
    let gif = encode(&DynamicImage::ImageRgb8(photo(60, 40)), ImageFormat::Gif);
    let webp = encode(&DynamicImage::ImageRgb8(photo(200, 150)), ImageFormat::WebP);
    let corpus: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "png-60000-square.png",
            png_claiming(60_000, 60_000, b"x"),
            "over the limit",
        ),
        (
            "jpeg-claims-65000.jpg",
            jpeg_claiming(65_000, 65_000),
            "over the limit",
        ),
        ("gif-huge-screen.gif", gif_screen, "limit"),
        ("webp-lies-about-its-size.webp", webp_claim, "pixels"),
        (
            "truncated.jpg",
            real[..real.len() / 2].to_vec(),
            "not a valid Jpeg",
        ),
        ("truncated.png", cut(png), "not a valid Png"),
        ("truncated.gif", cut(gif), "not a valid Gif"),
        ("truncated.webp", cut(webp), "not a valid WebP"),
        (
            "png-bad-data.png",
            png_claiming(100, 100, b"not zlib at all"),
            "not a valid Png",
        ),
        (
            "jpeg-named-png.png",
            b"\xFF\xD8\xFF\xE0 not really a jpeg".to_vec(),
            "not a valid Jpeg",
        ),
        (
            "pdf.jpg",
            b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec(),
            "not an image",
        ),
        ("empty.png", Vec::new(), "not an image"),
        ("too-big.bin", zeros, "more than the 2000000 allowed"),
        ("bmp.bmp", [b"BM".as_slice(), &[0u8; 60]].concat(), "Bmp"),
        ("jpeg-garbled-data.jpg", garbled, "not a valid Jpeg"),
    ];
    for (name, bytes, _) in &corpus {
        put(&service, &format!("hostile/{name}"), bytes);
    }
    // Each file twice: shrunk (a JPEG is then decoded at a reduced scale) and flipped
    // (decoded whole).
    let mut ids = Vec::new();
    for (name, _, reason) in &corpus {
        for op in [json!({"op": "resize", "width": 100}), json!({"op": "flip"})] {
            let data = json!({"input_key": format!("hostile/{name}"), "operations": [op], "output_key": format!("out/{name}")});
            let id = service
                .api
                .add("image-processing", json!({"name": "img", "data": data}))
                .await;
            ids.push((*name, *reason, id));
        }
    }
    for (name, reason, id) in &ids {
        let job = service
            .api
            .wait_state("image-processing", id, "failed")
            .await;
        assert_eq!(
            job["attempts_made"], 1,
            "{name}: retried a hopeless file: {job}"
        );
        let failed = job["failed_reason"].as_str().expect("reason");
        assert!(
            failed.contains(reason),
            "{name}: '{failed}' does not say '{reason}'"
        );
        assert!(
            !service.data_file(&format!("out/{name}")).exists(),
            "{name}: wrote output"
        );
    }
    // Bad job data fails at once too, before the input is read.
    let job = run(
        &service,
        json!({"input_key": "x", "operations": [{"op": "explode"}]}),
        "failed",
    )
    .await;
    assert!(
        job["failed_reason"]
            .as_str()
            .expect("reason")
            .contains("explode"),
        "{job}"
    );
    let job = run(&service, json!({"input_key": "hostile/truncated.jpg", "operations": [{"op": "rotate", "degrees": 45}]}), "failed").await;
    assert!(
        job["failed_reason"]
            .as_str()
            .expect("reason")
            .contains("rotate by 45"),
        "{job}"
    );
    let job = run(&service, json!({"input_key": "nothing/here.jpg"}), "failed").await;
    assert!(
        job["failed_reason"]
            .as_str()
            .expect("reason")
            .contains("nothing stored"),
        "{job}"
    );
    // A real 10x10 image whose ICC profile would inflate to 256 MiB: its metadata is left
    // out, and it is processed for what it is.
    put(&service, "hostile/iccp-bomb.png", &iccp_bomb);
    let job = run(
        &service,
        json!({"input_key": "hostile/iccp-bomb.png", "output_key": "out/iccp.png"}),
        "completed",
    )
    .await;
    assert_eq!(
        (
            job["return_value"]["width"].clone(),
            job["return_value"]["height"].clone()
        ),
        (json!(10), json!(10))
    );
    // None of them got to allocate its claimed pixels (60,000 x 60,000 x 3 is 10 GB), nor
    // the profile its 256 MiB.
    let peak_mib = vm_hwm_kib(service.pid()) / 1024;
    assert!(peak_mib < 200, "peak RSS {peak_mib} MiB");
}
