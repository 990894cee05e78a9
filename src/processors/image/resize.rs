//! Resizing with `fast_image_resize` (SIMD convolution, Lanczos3 as sharp uses), and the
//! geometry of sharp's five fits.

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, GenericImage, Rgba, RgbaImage};
use stagehand_core::ProcessError;

use super::ops::{Bounds, Fit};

/// What a resize makes: the scaled size, and the crop or canvas around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The size the whole source is scaled to (before `cover` crops it).
    pub scaled: (u32, u32),
    /// The final size.
    pub out: (u32, u32),
}

fn round(v: f64) -> u32 {
    (v.round() as u32).max(1)
}

/// The sizes a resize of a `src` image to the box makes.
pub fn plan(
    src: (u32, u32),
    width: Option<u32>,
    height: Option<u32>,
    fit: Fit,
    upscale: bool,
) -> Plan {
    let (sw, sh) = (f64::from(src.0), f64::from(src.1));
    let (bw, bh) = match (width, height) {
        (Some(w), Some(h)) => (f64::from(w), f64::from(h)),
        // One side given: the other follows the aspect ratio, and every fit is `inside`.
        (Some(w), None) => (f64::from(w), f64::INFINITY),
        (None, Some(h)) => (f64::INFINITY, f64::from(h)),
        (None, None) => (sw, sh),
    };
    let one_side = width.is_none() || height.is_none();
    let (rx, ry) = (bw / sw, bh / sh);
    let limit = |r: f64| if upscale { r } else { r.min(1.0) };
    match fit {
        _ if one_side => {
            let r = limit(rx.min(ry));
            let s = (round(sw * r), round(sh * r));
            Plan { scaled: s, out: s }
        }
        Fit::Fill => {
            let s = (round(sw * limit(rx)), round(sh * limit(ry)));
            Plan { scaled: s, out: s }
        }
        Fit::Inside => {
            let r = limit(rx.min(ry));
            let s = (round(sw * r), round(sh * r));
            Plan { scaled: s, out: s }
        }
        Fit::Outside => {
            let r = limit(rx.max(ry));
            let s = (round(sw * r), round(sh * r));
            Plan { scaled: s, out: s }
        }
        Fit::Cover => {
            let r = limit(rx.max(ry));
            let s = (round(sw * r), round(sh * r));
            Plan {
                scaled: s,
                out: (s.0.min(bw as u32), s.1.min(bh as u32)),
            }
        }
        Fit::Contain => {
            let r = limit(rx.min(ry));
            let s = (round(sw * r), round(sh * r));
            Plan {
                scaled: s,
                out: (bw as u32, bh as u32),
            }
        }
    }
}

/// Pixels as `fast_image_resize` takes them: 8-bit gray, gray+alpha, RGB or RGBA.
fn to_fir(image: DynamicImage) -> (Image<'static>, bool) {
    let (w, h) = (image.width(), image.height());
    let (buffer, pixel, gray) = match image {
        DynamicImage::ImageLuma8(i) => (i.into_raw(), PixelType::U8, true),
        DynamicImage::ImageLumaA8(i) => (i.into_raw(), PixelType::U8x2, true),
        DynamicImage::ImageRgb8(i) => (i.into_raw(), PixelType::U8x3, false),
        DynamicImage::ImageRgba8(i) => (i.into_raw(), PixelType::U8x4, false),
        other if other.color().has_alpha() => (other.to_rgba8().into_raw(), PixelType::U8x4, false),
        other => (other.to_rgb8().into_raw(), PixelType::U8x3, false),
    };
    let image = Image::from_vec_u8(w, h, buffer, pixel).expect("a buffer the size of its image");
    (image, gray)
}

fn from_fir(image: Image<'static>) -> DynamicImage {
    let (w, h, pixel) = (image.width(), image.height(), image.pixel_type());
    let buffer = image.into_vec();
    let made = match pixel {
        PixelType::U8 => image::GrayImage::from_raw(w, h, buffer).map(DynamicImage::ImageLuma8),
        PixelType::U8x2 => {
            image::GrayAlphaImage::from_raw(w, h, buffer).map(DynamicImage::ImageLumaA8)
        }
        PixelType::U8x3 => image::RgbImage::from_raw(w, h, buffer).map(DynamicImage::ImageRgb8),
        _ => image::RgbaImage::from_raw(w, h, buffer).map(DynamicImage::ImageRgba8),
    };
    made.expect("a buffer the size of its image")
}

/// Scales `image` to exactly `size` (Lanczos3).
pub fn scale(image: DynamicImage, size: (u32, u32)) -> Result<DynamicImage, ProcessError> {
    if (image.width(), image.height()) == size {
        return Ok(image);
    }
    let (src, _) = to_fir(image);
    let mut dst = Image::new(size.0, size.1, src.pixel_type());
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| ProcessError::unrecoverable(format!("resize: {e}")))?;
    Ok(from_fir(dst))
}

/// Resizes `image` to the box as `fit` says.
pub fn resize(
    image: DynamicImage,
    width: Option<u32>,
    height: Option<u32>,
    fit: Fit,
    upscale: bool,
    background: Option<[u8; 4]>,
    bounds: &Bounds,
) -> Result<DynamicImage, ProcessError> {
    let plan = plan((image.width(), image.height()), width, height, fit, upscale);
    bounds.check("resize", plan.scaled.0, plan.scaled.1)?;
    bounds.check("resize", plan.out.0, plan.out.1)?;
    let scaled = scale(image, plan.scaled)?;
    if plan.out == plan.scaled {
        return Ok(scaled);
    }
    let (ow, oh) = plan.out;
    if fit == Fit::Contain {
        let alpha = scaled.color().has_alpha();
        let fill = background.unwrap_or(if alpha {
            [0, 0, 0, 0]
        } else {
            [255, 255, 255, 255]
        });
        let mut canvas = RgbaImage::from_pixel(ow, oh, Rgba(fill));
        let (x, y) = ((ow - plan.scaled.0) / 2, (oh - plan.scaled.1) / 2);
        canvas
            .copy_from(&scaled.to_rgba8(), x, y)
            .map_err(|e| ProcessError::unrecoverable(format!("contain: {e}")))?;
        let canvas = DynamicImage::ImageRgba8(canvas);
        return Ok(if alpha || fill[3] < 255 {
            canvas
        } else {
            DynamicImage::ImageRgb8(canvas.to_rgb8())
        });
    }
    // Cover: the centre of the scaled image.
    let (x, y) = ((plan.scaled.0 - ow) / 2, (plan.scaled.1 - oh) / 2);
    Ok(scaled.crop_imm(x, y, ow, oh))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_five_fits_make_the_sizes_sharp_makes() {
        let src = (4000, 3000);
        let p = |w, h, fit| plan(src, w, h, fit, false);
        assert_eq!(p(Some(800), None, Fit::Cover).out, (800, 600));
        assert_eq!(p(None, Some(300), Fit::Cover).out, (400, 300));
        assert_eq!(
            p(Some(800), Some(800), Fit::Cover),
            Plan {
                scaled: (1067, 800),
                out: (800, 800)
            }
        );
        assert_eq!(
            p(Some(800), Some(800), Fit::Contain),
            Plan {
                scaled: (800, 600),
                out: (800, 800)
            }
        );
        assert_eq!(p(Some(800), Some(800), Fit::Fill).out, (800, 800));
        assert_eq!(p(Some(800), Some(800), Fit::Inside).out, (800, 600));
        assert_eq!(p(Some(800), Some(800), Fit::Outside).out, (1067, 800));
    }

    #[test]
    fn nothing_grows_unless_asked() {
        let src = (400, 300);
        assert_eq!(
            plan(src, Some(800), None, Fit::Cover, false).out,
            (400, 300)
        );
        assert_eq!(plan(src, Some(800), None, Fit::Cover, true).out, (800, 600));
        assert_eq!(
            plan(src, Some(800), Some(800), Fit::Fill, false).out,
            (400, 300)
        );
        assert_eq!(
            plan(src, Some(800), Some(800), Fit::Contain, false),
            Plan {
                scaled: (400, 300),
                out: (800, 800)
            }
        );
        assert_eq!(
            plan(src, Some(800), Some(100), Fit::Cover, false).out,
            (400, 100)
        );
    }

    #[test]
    fn a_one_pixel_side_stays_one_pixel() {
        assert_eq!(
            plan((10_000, 1), Some(10), None, Fit::Inside, false).out,
            (10, 1)
        );
        assert_eq!(
            plan((1, 10_000), Some(1), Some(5), Fit::Cover, false).out,
            (1, 5)
        );
    }
}
