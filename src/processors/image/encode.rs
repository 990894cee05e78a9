//! Encoding: JPEG and PNG with the `image` crate's encoders, WebP with libwebp (the `webp`
//! crate), lossy at a quality or lossless. The `image` crate's own WebP encoder is lossless
//! only, which makes photos several times larger than sharp's lossy WebP.

use image::codecs::jpeg::JpegEncoder;
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
            // JPEG has no alpha: flatten onto white; gray stays gray.
            let encoder = JpegEncoder::new_with_quality(&mut out, output.quality);
            match image {
                DynamicImage::ImageLuma8(gray) => {
                    encoder.write_image(gray.as_raw(), w, h, image::ExtendedColorType::L8)
                }
                other => {
                    let rgb = if other.color().has_alpha() {
                        flatten(other)
                    } else {
                        other.to_rgb8()
                    };
                    encoder.write_image(rgb.as_raw(), w, h, image::ExtendedColorType::Rgb8)
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
