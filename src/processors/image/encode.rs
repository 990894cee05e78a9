//! Encoding: JPEG with `jpeg-encoder` (4:2:0 chroma below quality 90, as sharp does by
//! default; the `image` crate's encoder keeps full chroma, which makes larger files), PNG with the `image` crate, WebP with libwebp (the `webp` crate),
//! lossy at a quality or lossless. The `image` crate's own WebP encoder is lossless only,
//! which makes photos several times larger than sharp's lossy WebP.

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ImageEncoder};
use stagehand_core::ProcessError;

use super::ops::{Format, Output};

fn failed(format: Format, err: impl std::fmt::Display) -> ProcessError {
    ProcessError::unrecoverable(format!("{} encoding failed: {err}", format.name()))
}

/// Encodes `image` as `output` says.
pub fn encode(image: &DynamicImage, output: &Output) -> Result<Vec<u8>, ProcessError> {
    let mut out = Vec::new();
    let (w, h) = (image.width(), image.height());
    match output.format {
        Format::Jpeg => {
            // The format stops at 65,535; libjpeg (browsers, libvips) at 65,500.
            let fits = |side: u32| u16::try_from(side).ok().filter(|&s| s <= 65_500);
            let (Some(w16), Some(h16)) = (fits(w), fits(h)) else {
                return Err(failed(
                    output.format,
                    "JPEG is read by most decoders up to 65500x65500 pixels",
                ));
            };
            // The standard Huffman tables: zune-jpeg (the `image` crate's decoder) misreads
            // some files with optimized tables (a flat 8x17 image, from its second MCU row).
            let mut encoder = jpeg_encoder::Encoder::new(&mut out, output.quality);
            // Halved chroma is the average of each 2x2 block, as libjpeg makes it (the
            // crate's default takes one pixel of four, which turns fine colour detail wrong).
            encoder.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
            // JPEG has no alpha: flatten onto white; gray stays gray.
            match image {
                DynamicImage::ImageLuma8(gray) => {
                    encoder.encode(gray.as_raw(), w16, h16, jpeg_encoder::ColorType::Luma)
                }
                DynamicImage::ImageRgb8(rgb) => {
                    encoder.encode(rgb.as_raw(), w16, h16, jpeg_encoder::ColorType::Rgb)
                }
                other => {
                    let rgb = if other.color().has_alpha() {
                        flatten(other)
                    } else {
                        other.to_rgb8()
                    };
                    encoder.encode(rgb.as_raw(), w16, h16, jpeg_encoder::ColorType::Rgb)
                }
            }
            .map_err(|e| failed(output.format, e))?;
        }
        Format::Png => {
            let encoder =
                PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive);
            let (bytes, color) = match image {
                DynamicImage::ImageLuma8(i) => (i.as_raw().clone(), image::ExtendedColorType::L8),
                DynamicImage::ImageLumaA8(i) => (i.as_raw().clone(), image::ExtendedColorType::La8),
                DynamicImage::ImageRgb8(i) => (i.as_raw().clone(), image::ExtendedColorType::Rgb8),
                other if other.color().has_alpha() => {
                    (other.to_rgba8().into_raw(), image::ExtendedColorType::Rgba8)
                }
                other => (other.to_rgb8().into_raw(), image::ExtendedColorType::Rgb8),
            };
            encoder
                .write_image(&bytes, w, h, color)
                .map_err(|e| failed(output.format, e))?;
        }
        Format::Webp => {
            let (bytes, alpha) = if image.color().has_alpha() {
                (image.to_rgba8().into_raw(), true)
            } else {
                (image.to_rgb8().into_raw(), false)
            };
            let encoder = if alpha {
                webp::Encoder::from_rgba(&bytes, w, h)
            } else {
                webp::Encoder::from_rgb(&bytes, w, h)
            };
            if w > 16_383 || h > 16_383 {
                return Err(failed(
                    output.format,
                    "WebP holds at most 16383x16383 pixels",
                ));
            }
            let memory = if output.lossless {
                encoder.encode_lossless()
            } else {
                encoder.encode(f32::from(output.quality))
            };
            if memory.is_empty() {
                return Err(failed(output.format, "libwebp made nothing"));
            }
            out.extend_from_slice(&memory);
        }
    }
    Ok(out)
}

/// RGBA over white, as RGB.
fn flatten(image: &DynamicImage) -> image::RgbImage {
    let rgba = image.to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut rgb = image::RgbImage::new(w, h);
    for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
        let a = u16::from(px[3]);
        for c in 0..3 {
            out[c] = ((u16::from(px[c]) * a + 255 * (255 - a)) / 255) as u8;
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(quality: u8) -> Output {
        Output {
            format: Format::Jpeg,
            quality,
            lossless: false,
        }
    }

    /// The horizontal and vertical sampling factors of each component, from the frame header.
    fn sampling(jpeg: &[u8]) -> Vec<u8> {
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline frame header");
        let components = usize::from(jpeg[sof + 9]);
        (0..components).map(|i| jpeg[sof + 11 + i * 3]).collect()
    }

    #[test]
    fn a_photo_jpeg_halves_its_chroma_as_sharp_does_and_keeps_it_at_high_quality() {
        let photo = DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 128])
        }));
        let q80 = encode(&photo, &jpeg(80)).expect("encoded");
        assert_eq!(sampling(&q80), [0x22, 0x11, 0x11], "4:2:0 at quality 80");
        let back = image::load_from_memory(&q80).expect("decodes");
        assert_eq!((back.width(), back.height()), (64, 48));
        let q95 = encode(&photo, &jpeg(95)).expect("encoded");
        assert_eq!(sampling(&q95), [0x11, 0x11, 0x11], "4:4:4 at quality 95");
    }

    /// Encodes `image` and decodes it again with the `image` crate (zune-jpeg), as RGB.
    fn round_trip(image: &DynamicImage, quality: u8) -> image::RgbImage {
        let bytes = encode(image, &jpeg(quality)).expect("encoded");
        image::load_from_memory(&bytes).expect("decodes").to_rgb8()
    }

    #[test]
    fn odd_and_tiny_sizes_and_alpha_encode_to_jpegs_that_decode_whole() {
        for (w, h) in [
            (1, 1),
            (1, 17),
            (17, 1),
            (3, 5),
            (8, 17),
            (16, 17),
            (33, 40),
        ] {
            // Fully transparent red flattens onto white; black stays black.
            let clear = image::Rgba([200, 10, 10, 0]);
            let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(w, h, clear));
            let gray = DynamicImage::ImageLuma8(image::GrayImage::new(w, h));
            for quality in [1, 80, 95, 100] {
                let white = round_trip(&rgba, quality);
                assert_eq!(white.dimensions(), (w, h));
                let bad = white
                    .pixels()
                    .filter(|p| p.0.iter().any(|&c| c < 240))
                    .count();
                assert_eq!(bad, 0, "{w}x{h} at {quality}: {white:?}");
                let black = round_trip(&gray, quality);
                assert_eq!(black.dimensions(), (w, h));
                let bad = black
                    .pixels()
                    .filter(|p| p.0.iter().any(|&c| c > 15))
                    .count();
                assert_eq!(bad, 0, "{w}x{h} at {quality}: {black:?}");
            }
        }
    }

    #[test]
    fn halved_chroma_averages_fine_colour_detail() {
        // Rows of pure red and pure blue: at 4:2:0 each 2x2 block's chroma is their mean, so
        // both rows come out purple-ish, never one colour for both.
        let rows = DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 64, |_, y| {
            if y % 2 == 0 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        }));
        let back = round_trip(&rows, 80);
        for y in [10, 11] {
            let image::Rgb([r, _, b]) = *back.get_pixel(32, y);
            assert!(r > 60 && b > 60, "row {y}: {:?}", back.get_pixel(32, y));
        }
    }

    #[test]
    fn a_jpeg_wider_than_the_format_allows_fails_with_the_reason() {
        for side in [65_501, 65_536] {
            let wide = DynamicImage::ImageLuma8(image::GrayImage::new(side, 1));
            let err = encode(&wide, &jpeg(80)).expect_err("refused");
            assert!(err.is_unrecoverable());
            assert!(err.message().contains("65500x65500"), "{err}");
        }
        let widest = DynamicImage::ImageLuma8(image::GrayImage::new(65_500, 1));
        assert!(encode(&widest, &jpeg(80)).is_ok());
    }
}
