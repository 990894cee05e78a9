//! Image operations as jobs name them (`{"op": "resize", "width": 800}`), checked before any
//! pixel is touched, and applied to a decoded image.

use image::DynamicImage;
use serde::Deserialize;
use stagehand_core::ProcessError;

use super::resize;

/// How a resize fits the box, as sharp names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Fill the box, keep the aspect ratio, crop what sticks out (centered).
    #[default]
    Cover,
    /// Fit inside the box, keep the aspect ratio, pad the rest with `background`.
    Contain,
    /// Stretch to the box exactly.
    Fill,
    /// Fit inside the box, keep the aspect ratio (the result may be smaller than the box).
    Inside,
    /// Cover the box, keep the aspect ratio, crop nothing (the result may be larger).
    Outside,
}

/// An output encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JPEG (lossy; `quality`).
    #[serde(alias = "jpg")]
    Jpeg,
    /// PNG (lossless).
    Png,
    /// WebP: lossy with `quality`, or lossless with `lossless: true`.
    Webp,
}

impl Format {
    /// The name used in results and file extensions.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
        }
    }
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Scale to a box (either side may be left out: the aspect ratio gives it).
    Resize {
        /// Box width.
        #[serde(default)]
        width: Option<u32>,
        /// Box height.
        #[serde(default)]
        height: Option<u32>,
        /// How to fit the box.
        #[serde(default)]
        fit: Fit,
        /// Allow making the image larger.
        #[serde(default)]
        upscale: bool,
        /// `contain`'s padding, `#rrggbb` or `#rrggbbaa` (default transparent or white).
        #[serde(default)]
        background: Option<String>,
    },
    /// A smaller version that fits `width` x `height` (`inside`, never larger).
    Thumbnail {
        /// Box width.
        width: u32,
        /// Box height (default: the width).
        #[serde(default)]
        height: Option<u32>,
    },
    /// Cut out a rectangle.
    Crop {
        /// From the left edge.
        left: u32,
        /// From the top edge.
        top: u32,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
    },
    /// Turn clockwise by 90, 180 or 270 degrees.
    Rotate {
        /// 90, 180 or 270.
        #[serde(alias = "angle")]
        degrees: i32,
    },
    /// Mirror top to bottom.
    Flip,
    /// Mirror left to right.
    Flop,
    /// Shades of grey.
    Grayscale,
    /// Gaussian-like blur of `sigma` (0.3 to 100).
    Blur {
        /// Its strength.
        sigma: f32,
    },
    /// Unsharp mask.
    Sharpen {
        /// The blur it subtracts (0.3 to 10; default 1).
        #[serde(default)]
        sigma: Option<f32>,
        /// Differences smaller than this are left alone (default 1).
        #[serde(default)]
        threshold: Option<i32>,
    },
    /// Add to every channel: -255 to 255.
    Brightness {
        /// How much.
        value: i32,
    },
    /// Stretch (positive) or flatten (negative) contrast, in percent: -100 to 100.
    Contrast {
        /// How much.
        value: f32,
    },
    /// The output encoding (default: the input's, or PNG for GIF).
    Format {
        /// Which.
        format: Format,
        /// 1 to 100 for lossy encodings (default 80).
        #[serde(default)]
        quality: Option<u8>,
        /// WebP only: encode without loss.
        #[serde(default)]
        lossless: bool,
    },
}

/// The output encoding the `format` operations ask for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output {
    /// Which.
    pub format: Format,
    /// For lossy encodings.
    pub quality: u8,
    /// WebP without loss.
    pub lossless: bool,
}

/// The limits every image read or made must keep.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Widest.
    pub max_width: u32,
    /// Tallest.
    pub max_height: u32,
    /// Most pixels.
    pub max_pixels: u64,
}

impl Bounds {
    /// Checks a size about to be made or read.
    pub fn check(&self, what: &str, width: u32, height: u32) -> Result<(), ProcessError> {
        if width == 0 || height == 0 {
            return Err(ProcessError::unrecoverable(format!(
                "{what}: {width}x{height} has no pixels"
            )));
        }
        if width > self.max_width
            || height > self.max_height
            || u64::from(width) * u64::from(height) > self.max_pixels
        {
            return Err(ProcessError::unrecoverable(format!(
                "{what}: {width}x{height} is over the limit ({}x{}, {} pixels; processors.image)",
                self.max_width, self.max_height, self.max_pixels
            )));
        }
        Ok(())
    }
}

fn bad(message: impl Into<String>) -> ProcessError {
    ProcessError::unrecoverable(message)
}

/// Parses `#rgb`, `#rrggbb` or `#rrggbbaa`.
pub fn color(text: &str) -> Result<[u8; 4], ProcessError> {
    let hex = text.strip_prefix('#').unwrap_or(text);
    let digits = |s: &str| u8::from_str_radix(s, 16).ok();
    let parsed = match hex.len() {
        3 => hex
            .chars()
            .map(|c| digits(&format!("{c}{c}")))
            .chain([Some(255)])
            .collect::<Option<Vec<u8>>>(),
        6 | 8 => (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(digits))
            .chain((hex.len() == 6).then_some(Some(255)))
            .collect::<Option<Vec<u8>>>(),
        _ => None,
    };
    match parsed {
        Some(v) if v.len() == 4 => Ok([v[0], v[1], v[2], v[3]]),
        _ => Err(bad(format!(
            "background '{text}' is not a colour (#rgb, #rrggbb or #rrggbbaa)"
        ))),
    }
}

/// Checks every operation's arguments, and finds the output encoding.
pub fn validate(ops: &[Op], input: Option<Format>) -> Result<Output, ProcessError> {
    let mut output = Output {
        format: input.unwrap_or(Format::Png),
        quality: 80,
        lossless: false,
    };
    if ops.len() > 32 {
        return Err(bad("at most 32 operations"));
    }
    for (i, op) in ops.iter().enumerate() {
        let at = |m: String| bad(format!("operations[{i}]: {m}"));
        match op {
            Op::Resize {
                width,
                height,
                background,
                ..
            } => {
                if width.is_none() && height.is_none() {
                    return Err(at("resize needs a width, a height or both".into()));
                }
                if *width == Some(0) || *height == Some(0) {
                    return Err(at("resize to 0 pixels".into()));
                }
                if let Some(bg) = background {
                    color(bg).map_err(|e| at(e.message().to_string()))?;
                }
            }
            Op::Thumbnail { width, height } => {
                if *width == 0 || *height == Some(0) {
                    return Err(at("thumbnail of 0 pixels".into()));
                }
            }
            Op::Crop { width, height, .. } => {
                if *width == 0 || *height == 0 {
                    return Err(at("crop of 0 pixels".into()));
                }
            }
            Op::Rotate { degrees } => {
                if ![90, 180, 270, -90].contains(degrees) {
                    return Err(at(format!("rotate by {degrees}: use 90, 180 or 270")));
                }
            }
            Op::Blur { sigma } => {
                if !(0.3..=100.0).contains(sigma) {
                    return Err(at(format!("blur sigma {sigma}: use 0.3 to 100")));
                }
            }
            Op::Sharpen { sigma, threshold } => {
                if let Some(s) = sigma
                    && !(0.3..=10.0).contains(s)
                {
                    return Err(at(format!("sharpen sigma {s}: use 0.3 to 10")));
                }
                if let Some(t) = threshold
                    && !(0..=255).contains(t)
                {
                    return Err(at(format!("sharpen threshold {t}: use 0 to 255")));
                }
            }
            Op::Brightness { value } => {
                if !(-255..=255).contains(value) {
                    return Err(at(format!("brightness {value}: use -255 to 255")));
                }
            }
            Op::Contrast { value } => {
                if !(-100.0..=100.0).contains(value) {
                    return Err(at(format!("contrast {value}: use -100 to 100")));
                }
            }
            Op::Format {
                format,
                quality,
                lossless,
            } => {
                if let Some(q) = quality
                    && !(1..=100).contains(q)
                {
                    return Err(at(format!("quality {q}: use 1 to 100")));
                }
                if *lossless && *format != Format::Webp {
                    return Err(at("lossless is for webp (png is always lossless)".into()));
                }
                output = Output {
                    format: *format,
                    quality: quality.unwrap_or(80),
                    lossless: *lossless,
                };
            }
            Op::Flip | Op::Flop | Op::Grayscale => {}
        }
    }
    Ok(output)
}

/// Applies one operation.
pub fn apply(image: DynamicImage, op: &Op, bounds: &Bounds) -> Result<DynamicImage, ProcessError> {
    Ok(match op {
        Op::Resize {
            width,
            height,
            fit,
            upscale,
            background,
        } => {
            let background = background.as_deref().map(color).transpose()?;
            resize::resize(image, *width, *height, *fit, *upscale, background, bounds)?
        }
        Op::Thumbnail { width, height } => resize::resize(
            image,
            Some(*width),
            Some(height.unwrap_or(*width)),
            Fit::Inside,
            false,
            None,
            bounds,
        )?,
        Op::Crop {
            left,
            top,
            width,
            height,
        } => {
            let fits = u64::from(*left) + u64::from(*width) <= u64::from(image.width())
                && u64::from(*top) + u64::from(*height) <= u64::from(image.height());
            if !fits {
                return Err(bad(format!(
                    "crop {width}x{height} at {left},{top} reaches outside the {}x{} image",
                    image.width(),
                    image.height()
                )));
            }
            image.crop_imm(*left, *top, *width, *height)
        }
        Op::Rotate { degrees } => match degrees {
            90 => image.rotate90(),
            180 => image.rotate180(),
            _ => image.rotate270(),
        },
        Op::Flip => image.flipv(),
        Op::Flop => image.fliph(),
        Op::Grayscale => match image.color().has_alpha() {
            true => DynamicImage::ImageLumaA8(image.to_luma_alpha8()),
            false => DynamicImage::ImageLuma8(image.to_luma8()),
        },
        Op::Blur { sigma } => image.fast_blur(*sigma),
        Op::Sharpen { sigma, threshold } => {
            image.unsharpen(sigma.unwrap_or(1.0), threshold.unwrap_or(1))
        }
        Op::Brightness { value } => image.brighten(*value),
        Op::Contrast { value } => image.adjust_contrast(*value),
        Op::Format { .. } => image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(value: serde_json::Value) -> Result<Vec<Op>, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn operations_are_read_by_their_op_and_checked() {
        let list = ops(json!([
            {"op": "resize", "width": 800, "fit": "inside"},
            {"op": "rotate", "angle": 90},
            {"op": "format", "format": "webp", "quality": 70}
        ]))
        .expect("ops");
        let out = validate(&list, Some(Format::Jpeg)).expect("valid");
        assert_eq!((out.format, out.quality), (Format::Webp, 70));
        assert!(ops(json!([{"op": "explode"}])).is_err());
        assert!(ops(json!([{"op": "resize", "width": 8, "colour": 1}])).is_err());
        for bad in [
            json!([{"op": "resize"}]),
            json!([{"op": "resize", "width": 0}]),
            json!([{"op": "rotate", "degrees": 45}]),
            json!([{"op": "blur", "sigma": 5000}]),
            json!([{"op": "format", "format": "jpeg", "quality": 0}]),
            json!([{"op": "format", "format": "png", "lossless": true}]),
            json!([{"op": "resize", "width": 9, "fit": "contain", "background": "#zz0000"}]),
        ] {
            let list = ops(bad.clone()).expect("parses");
            assert!(validate(&list, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn colours_are_read_in_three_lengths() {
        assert_eq!(color("#fff").expect("3"), [255, 255, 255, 255]);
        assert_eq!(color("#102030").expect("6"), [16, 32, 48, 255]);
        assert_eq!(color("#10203040").expect("8"), [16, 32, 48, 64]);
        assert!(color("#12").is_err());
        assert!(color("#ééé").is_err());
    }
}
