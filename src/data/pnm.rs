//! PGM and PPM files whose maximum value is not 255, decoded as PIL decodes them (so that a model
//! sees the pixels torchvision's loader gives it): each sample scaled by
//! `round(value / maxval * out_max)` with Python's `round` (half to even), where `out_max` is 255,
//! except for a PGM whose maxval exceeds 255, which PIL reads as a 32-bit "I" image scaled to
//! 65535 and then clips to 0..255 when torchvision's loader converts it to RGB (so such a file
//! is mostly white in PyTorch, and here too). Source: Pillow's `PpmImagePlugin.py`
//! (`PpmDecoder`, `PpmPlainDecoder`) and `Convert.c` (`I` to `RGB` clips).
//!
//! The `image` crate scales these files differently (one level off at a few percent of the
//! pixels for maxval 100 or 1000, and to the full 8-bit range for a 10-bit PGM); files with a
//! maxval of 255, PBM and PAM are left to it.

use image::RgbImage;

/// The header: magic (`P2`, `P3`, `P5`, `P6`), width, height, maxval, where the raster starts.
struct Header {
    magic: u8,
    width: u32,
    height: u32,
    maxval: u32,
    raster: usize,
}

/// PIL's whitespace (`ImageFile`/`PpmImagePlugin`'s `b_whitespace`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// The next token from `at`, skipping whitespace and `#` comments (to the end of the line).
fn token(b: &[u8], at: &mut usize) -> Option<u32> {
    loop {
        match b.get(*at)? {
            c if is_space(*c) => *at += 1,
            b'#' => {
                while !matches!(b.get(*at)?, b'\n' | b'\r') {
                    *at += 1;
                }
            }
            _ => break,
        }
    }
    let start = *at;
    while b.get(*at).is_some_and(u8::is_ascii_digit) {
        *at += 1;
    }
    std::str::from_utf8(&b[start..*at]).ok()?.parse().ok()
}

fn header(b: &[u8]) -> Option<Header> {
    let magic = match b.get(..2)? {
        [b'P', m @ (b'2' | b'3' | b'5' | b'6')] => *m,
        _ => return None,
    };
    let mut at = 2;
    let (width, height, maxval) = (token(b, &mut at)?, token(b, &mut at)?, token(b, &mut at)?);
    // One whitespace byte ends the header.
    Some(Header { magic, width, height, maxval, raster: at + 1 })
}

/// `v / maxval * out_max`, rounded as Python's `round` does (half to even).
fn scale(v: u32, maxval: u32, out_max: u32) -> u32 {
    (f64::from(v) / f64::from(maxval) * f64::from(out_max)).round_ties_even() as u32
}

/// `bytes` decoded as PIL would and converted to RGB, for a PGM or PPM (binary or plain) whose
/// maxval is not 255; `None` for any other file (the `image` crate's decoding is PIL's then).
///
/// # Errors
/// A raster that ends early, or a sample above maxval (PIL refuses it too).
pub(crate) fn decode_like_pil(bytes: &[u8]) -> Option<Result<RgbImage, String>> {
    let h = header(bytes)?;
    if h.maxval == 255 || h.maxval == 0 || h.maxval > 65535 {
        return None;
    }
    let bands = if matches!(h.magic, b'3' | b'6') { 3 } else { 1 };
    let n = h.width as usize * h.height as usize * bands;
    let samples: Vec<u32> = if matches!(h.magic, b'5' | b'6') {
        let width = if h.maxval < 256 { 1 } else { 2 };
        let Some(raster) = bytes.get(h.raster..h.raster + n * width) else {
            return Some(Err(format!("the raster ends before its {n} samples")));
        };
        raster.chunks(width).map(|s| s.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b))).collect()
    } else {
        let mut at = h.raster - 1;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            match token(bytes, &mut at) {
                Some(v) => out.push(v),
                None => return Some(Err(format!("the plain raster ends before its {n} samples"))),
            }
        }
        out
    };
    if let Some(v) = samples.iter().find(|&&v| v > h.maxval) {
        return Some(Err(format!("a sample ({v}) is above the maxval {}", h.maxval)));
    }
    let gray_as_i = bands == 1 && h.maxval > 255;
    let value = |v: u32| -> u8 {
        if gray_as_i {
            // PIL's "I" image, 0..65535, clipped to 8 bits by the conversion to RGB.
            scale(v, h.maxval, 65535).min(255) as u8
        } else {
            scale(v, h.maxval, 255).min(255) as u8
        }
    };
    let img = RgbImage::from_fn(h.width, h.height, |x, y| {
        let i = (y as usize * h.width as usize + x as usize) * bands;
        if bands == 3 {
            image::Rgb([value(samples[i]), value(samples[i + 1]), value(samples[i + 2])])
        } else {
            let g = value(samples[i]);
            image::Rgb([g, g, g])
        }
    });
    Some(Ok(img))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_is_pil_s() {
        // Values from Pillow 11 (`Image.open` of these files, `convert("RGB")`).
        let p5 = [b"P5\n# a comment\n3 1\n100\n".to_vec(), vec![0, 50, 99]].concat();
        let img = decode_like_pil(&p5).unwrap().unwrap();
        // 50/100*255 = 127.5 rounds to 128 (half to even), 99/100*255 = 252.45 to 252.
        assert_eq!(img.pixels().map(|p| p[0]).collect::<Vec<_>>(), [0, 128, 252]);
        let p6 = [b"P6 1 1 1000 ".to_vec(), vec![0x01, 0xf4, 0x00, 0x02, 0x03, 0xe8]].concat();
        assert_eq!(decode_like_pil(&p6).unwrap().unwrap().get_pixel(0, 0).0, [128, 1, 255]);
        // A 10-bit PGM: PIL's "I" image, clipped to 255 (1 of 1023 is 64 in 16 bits).
        let p5 = [b"P5 3 1 1023\n".to_vec(), vec![0, 1, 0, 3, 0, 4]].concat();
        assert_eq!(decode_like_pil(&p5).unwrap().unwrap().pixels().map(|p| p[0]).collect::<Vec<_>>(), [64, 192, 255]);
        let p2 = b"P2\n2 1\n7\n3 7\n";
        assert_eq!(decode_like_pil(p2).unwrap().unwrap().pixels().map(|p| p[0]).collect::<Vec<_>>(), [109, 255]);
        assert!(decode_like_pil(b"P6 1 1 255 abc").is_none(), "maxval 255: the image crate's decoding");
        assert!(decode_like_pil(b"P2 1 1 7 9").unwrap().unwrap_err().contains("above the maxval 7"));
        assert!(decode_like_pil(b"P5 4 1 100 ab").unwrap().unwrap_err().contains("ends before"));
    }
}
