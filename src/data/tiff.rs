//! TIFF files the `image` crate does not convert as PIL does, read with its own TIFF decoder
//! (the `tiff` crate):
//!
//! - 8-bit CMYK is converted to RGB as Pillow's `Convert.c` (`cmyk2rgb`) does, each channel
//!   `MULDIV255(255 - C, 255 - K)` with Pillow's rounding (the `image` crate's conversion is one
//!   level lower at about half the values);
//! - the colour layouts neither reads the way torchvision's loader does (YCbCr, bit depths
//!   below 8, CIE Lab, ...) are named as [`Unsupported`]: a dataset skips such a file with a
//!   warning, `predict` refuses it naming it.

use std::io::Cursor;

use image::RgbImage;
use tiff::{decoder::DecodingResult, ColorType};

/// A TIFF in a colour layout this program does not read.
#[derive(Debug)]
pub(crate) struct Unsupported(pub String);

/// Pillow's `MULDIV255(a, b)`: `a * b / 255`, rounded as Pillow rounds it.
fn muldiv255(a: u32, b: u32) -> u8 {
    let t = a * b + 128;
    ((t + (t >> 8)) >> 8) as u8
}

/// `bytes` decoded and converted to RGB as PIL would, for an 8-bit CMYK TIFF; `None` for any
/// other TIFF (left to the `image` crate).
///
/// # Errors
/// Why the TIFF does not decode.
pub(crate) fn decode_like_pil(bytes: &[u8]) -> Option<Result<RgbImage, String>> {
    let mut d = tiff::decoder::Decoder::new(Cursor::new(bytes)).ok()?;
    if d.colortype().ok()? != ColorType::CMYK(8) {
        return None;
    }
    Some((|| {
        let (w, h) = d.dimensions().map_err(|e| e.to_string())?;
        let DecodingResult::U8(cmyk) = d.read_image().map_err(|e| format!("cannot decode: {e}"))? else {
            return Err("an 8-bit CMYK image that does not decode to bytes".to_string());
        };
        if cmyk.len() != w as usize * h as usize * 4 {
            return Err(format!("{} CMYK bytes for {w} x {h} pixels", cmyk.len()));
        }
        Ok(RgbImage::from_fn(w, h, |x, y| {
            let p = &cmyk[(y as usize * w as usize + x as usize) * 4..][..4];
            let k = 255 - u32::from(p[3]);
            image::Rgb([0, 1, 2].map(|c| muldiv255(255 - u32::from(p[c]), k)))
        }))
    })())
}

/// Why a TIFF that the `image` crate cannot decode is not read here, when its colour layout is
/// the cause: `Some` naming it (`YCbCr(8)`, `Gray(4)`, ...).
pub(crate) fn unsupported(bytes: &[u8]) -> Option<Unsupported> {
    let colour = tiff::decoder::Decoder::new(Cursor::new(bytes)).ok()?.colortype().ok()?;
    Some(Unsupported(format!(
        "a TIFF of colour layout {colour:?}, which this program does not read (torchvision reads it through PIL); \
         convert it to 8-bit RGB, for example with PIL: `Image.open(path).convert(\"RGB\").save(path)`"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_converts_as_pillow_does() {
        // Pillow 11: CMYK (0,0,0,0) (128,0,0,0) (100,50,25,128) (255,255,255,255) to RGB.
        let px = |c: u8, m: u8, y: u8, k: u8| {
            let k = 255 - u32::from(k);
            [c, m, y].map(|v| muldiv255(255 - u32::from(v), k))
        };
        assert_eq!(px(0, 0, 0, 0), [255, 255, 255]);
        assert_eq!(px(128, 0, 0, 0), [127, 255, 255]);
        assert_eq!(px(100, 50, 25, 128), [77, 102, 115]);
        assert_eq!(px(255, 255, 255, 255), [0, 0, 0]);
    }
}
