//! Decoding under limits: the format is read from the bytes (never from the name), the size
//! from the header, and both are judged before a pixel is decoded. A JPEG that will be much
//! smaller in the end is decoded at 1/2, 1/4 or 1/8 scale straight from its DCT (as libvips
//! does), which skips most of the work.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use stagehand_core::ProcessError;

use super::ops::{Bounds, Format};

/// An image's header, read before decoding.
pub struct Header {
    /// Its format.
    pub format: ImageFormat,
    /// Its size as stored.
    pub size: (u32, u32),
    /// How it should be turned to stand upright (EXIF).
    pub orientation: Orientation,
}

impl Header {
    /// Its size once upright.
    pub fn upright(&self) -> (u32, u32) {
        if swaps_axes(self.orientation) {
            (self.size.1, self.size.0)
        } else {
            self.size
        }
    }

    /// The matching output format.
    pub fn output(&self) -> Option<Format> {
        match self.format {
            ImageFormat::Jpeg => Some(Format::Jpeg),
            ImageFormat::Png => Some(Format::Png),
            ImageFormat::WebP => Some(Format::Webp),
            _ => None,
        }
    }
}

fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

fn bad(message: impl Into<String>) -> ProcessError {
    ProcessError::unrecoverable(message)
}

/// The formats read.
const ACCEPTED: [ImageFormat; 4] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::WebP,
    ImageFormat::Gif,
];

/// Room for a decoder's own buffers and metadata (an ICC profile, say) besides the pixels.
const SLACK: u64 = 32 << 20;

/// The decoder's limits: the image's size, and memory for `pixels` pixels of RGBA at 16 bits
/// a channel plus [`SLACK`]. Reading the header allows only the slack: a tiny file whose
/// metadata inflates to gigabytes (a PNG's compressed ICC profile) is refused there.
fn limits(bounds: &Bounds, pixels: u64) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(bounds.max_width);
    limits.max_image_height = Some(bounds.max_height);
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(SLACK));
    limits
}

fn reader(bytes: &[u8], limits: Limits) -> Result<ImageReader<Cursor<&[u8]>>, ProcessError> {
    let format = image::guess_format(bytes).map_err(|_| {
        bad("the input is not an image this processor reads (JPEG, PNG, WebP or GIF, judged by its first bytes)")
    })?;
    if !ACCEPTED.contains(&format) {
        return Err(bad(format!(
            "the input is {format:?}; this processor reads JPEG, PNG, WebP and GIF"
        )));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    Ok(reader)
}

fn decode_error(format: ImageFormat, err: image::ImageError) -> ProcessError {
    match err {
        image::ImageError::Limits(e) => bad(format!(
            "the image is over the limits (processors.image): {e}"
        )),
        other => bad(format!("not a valid {format:?} image: {other}")),
    }
}

/// Whether a JPEG's data ends with its end-of-image marker. The decoder fills a file cut
/// short with grey and calls it done; a truncated upload must fail instead. Inside the
/// entropy-coded data every 0xFF is followed by 0x00 or a restart marker, so an `FF D9`
/// after the first scan begins is the real end.
fn jpeg_is_whole(bytes: &[u8]) -> bool {
    let Some(scan) = bytes.windows(2).position(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// PNG chunks left out before decoding: compressed ones whose inflated size nothing bounds
/// (a 1 MB ICC profile can inflate to gigabytes), and text. Nothing here reads them: colours
/// are taken as sRGB and outputs carry no metadata.
const PNG_DROPPED: [&[u8; 4]; 4] = [b"iCCP", b"zTXt", b"iTXt", b"tEXt"];

/// A PNG without its [`PNG_DROPPED`] chunks (the bytes as they are when there are none, or
/// when the chunk structure is broken: the decoder then says what is wrong).
pub fn without_png_metadata(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const SIGNATURE: usize = 8;
    let mut spans = Vec::new();
    let mut at = SIGNATURE;
    while at + 12 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let end = at + 12 + len as usize;
        if end > bytes.len() {
            break;
        }
        let kind = &bytes[at + 4..at + 8];
        if PNG_DROPPED.iter().any(|d| d.as_slice() == kind) {
            spans.push(at..end);
        }
        if kind == b"IDAT" || kind == b"IEND" {
            break; // metadata that matters comes before the image data
        }
        at = end;
    }
    if spans.is_empty() {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut from = 0;
    for span in spans {
        out.extend_from_slice(&bytes[from..span.start]);
        from = span.end;
    }
    out.extend_from_slice(&bytes[from..]);
    std::borrow::Cow::Owned(out)
}

/// Reads the header and checks the size against `bounds`.
pub fn header(bytes: &[u8], bounds: &Bounds) -> Result<Header, ProcessError> {
    let reader = reader(bytes, limits(bounds, 0))?;
    let format = reader.format().unwrap_or(ImageFormat::Png);
    if format == ImageFormat::Jpeg && !jpeg_is_whole(bytes) {
        return Err(bad(
            "not a valid Jpeg image: it ends before its end-of-image marker (truncated?)",
        ));
    }
    let mut decoder = reader.into_decoder().map_err(|e| decode_error(format, e))?;
    let size = decoder.dimensions();
    bounds.check("input", size.0, size.1)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    Ok(Header {
        format,
        size,
        orientation,
    })
}

/// Decodes the image, upright when `auto_orient`. A JPEG is decoded at the smallest DCT scale
/// that is still at least `shrink` times its size (1 decodes it whole).
pub fn decode(
    bytes: &[u8],
    header: &Header,
    bounds: &Bounds,
    shrink: f64,
    auto_orient: bool,
) -> Result<DynamicImage, ProcessError> {
    let scaled = if header.format == ImageFormat::Jpeg && shrink <= 0.5 {
        decode_jpeg_scaled(bytes, header, shrink)?
    } else {
        None
    };
    let mut image = match scaled {
        Some(image) => image,
        None if header.format == ImageFormat::Jpeg => decode_jpeg_strict(bytes, bounds)?,
        None => {
            let pixels = u64::from(header.size.0) * u64::from(header.size.1);
            let decoder = reader(bytes, limits(bounds, pixels))?
                .into_decoder()
                .map_err(|e| decode_error(header.format, e))?;
            DynamicImage::from_decoder(decoder).map_err(|e| decode_error(header.format, e))?
        }
    };
    if auto_orient {
        image.apply_orientation(header.orientation);
    }
    Ok(image)
}

/// A JPEG decoded at a reduced scale, or `None` when this decoder cannot (16-bit or CMYK
/// pixels, or a size it refuses): the full decoder takes it then.
fn decode_jpeg_scaled(
    bytes: &[u8],
    header: &Header,
    shrink: f64,
) -> Result<Option<DynamicImage>, ProcessError> {
    let (w, h) = header.size;
    let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
        return Ok(None);
    };
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.set_max_decoding_buffer_size(
        usize::try_from(u64::from(w) * u64::from(h) * 4).unwrap_or(usize::MAX),
    );
    let want = |side: u16| ((f64::from(side) * shrink).ceil() as u16).max(1);
    let (sw, sh) = match decoder.scale(want(w16), want(h16)) {
        Ok(size) => size,
        Err(e) => return Err(bad(format!("not a valid Jpeg image: {e}"))),
    };
    // CMYK and 16-bit pixels are left to the full decoder before any work is done.
    let format = decoder.info().map(|i| i.pixel_format);
    if !matches!(
        format,
        Some(jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8)
    ) {
        return Ok(None);
    }
    let pixels = decoder
        .decode()
        .map_err(|e| bad(format!("not a valid Jpeg image: {e}")))?;
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    let made = match format {
        Some(jpeg_decoder::PixelFormat::RGB24) => {
            image::RgbImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageRgb8)
        }
        _ => image::GrayImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageLuma8),
    };
    Ok(made)
}

/// A JPEG decoded whole by zune-jpeg in strict mode: a scan broken by a marker where none
/// may be, or a bad Huffman code, is an error rather than grey filler (the `image` crate
/// runs zune-jpeg leniently). Gray stays gray; anything else becomes RGB.
fn decode_jpeg_strict(bytes: &[u8], bounds: &Bounds) -> Result<DynamicImage, ProcessError> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let invalid = |e: zune_jpeg::errors::DecodeErrors| bad(format!("not a valid Jpeg image: {e}"));
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(bounds.max_width as usize)
        .set_max_height(bounds.max_height as usize);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(invalid)?;
    let gray = decoder.input_colorspace() == Some(ColorSpace::Luma);
    let out = if gray {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    decoder.set_options(options.jpeg_set_out_colorspace(out));
    let pixels = decoder.decode().map_err(invalid)?;
    let (w, h) = decoder
        .dimensions()
        .map(|(w, h)| (w as u32, h as u32))
        .ok_or_else(|| bad("not a valid Jpeg image: no frame"))?;
    let made = if gray {
        image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
    } else {
        image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
    };
    made.ok_or_else(|| bad("not a valid Jpeg image: its pixels do not fill its frame"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            max_width: 10_000,
            max_height: 10_000,
            max_pixels: 20_000_000,
        }
    }

    #[test]
    fn a_header_that_claims_too_many_pixels_is_refused_before_decoding() {
        // A PNG header claiming 60,000 x 60,000 pixels, with no data behind it.
        let mut png = Vec::new();
        png.extend_from_slice(b"\x89PNG\r\n\x1a\n");
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(b"IHDR");
        ihdr.extend_from_slice(&60_000u32.to_be_bytes());
        ihdr.extend_from_slice(&60_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        let err = match header(&png, &bounds()) {
            Err(e) => e,
            Ok(h) => panic!("read a header of {:?}", h.size),
        };
        assert!(err.is_unrecoverable());
        assert!(err.message().contains("limit"), "{err}");
    }

    #[test]
    fn bytes_that_are_no_image_are_refused_with_a_reason() {
        let err = header(b"%PDF-1.7 not an image", &bounds())
            .err()
            .expect("refused");
        assert!(err.message().contains("not an image"), "{err}");
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
}
