//! One image file as 32x32 8-bit RGB: the one image reader of training folders and `predict`.
//!
//! The formats are those torchvision's `ImageFolder` reads (its `IMG_EXTENSIONS`): PNG, JPEG,
//! BMP, PNM (PPM, PGM; also PBM and PAM), TIFF and WebP, decoded by the `image` crate. The format
//! is sniffed from the content, not the extension, as PIL does.
//!
//! Every input is bounded before its pixels are allocated:
//! - the file is read only when it is a regular file of at most
//!   [`MAX_IMAGE_FILE_BYTES`](crate::safe_fs::MAX_IMAGE_FILE_BYTES) ([`crate::safe_fs`]);
//! - a file that ends before its format's end does not decode: some decoders report nothing (the
//!   `image` crate's JPEG decoder fills the missing part with grey; its WebP decoder ignores a
//!   short last partition), so the container is checked first (`check_complete`);
//! - the header's dimensions must be within [`MAX_IMAGE_SIDE`] a side and [`MAX_IMAGE_PIXELS`];
//! - the memory the decode and the resize will hold is estimated from the header
//!   (`decode_estimate`) and reserved from one process-wide budget of
//!   [`DECODE_MEMORY_BUDGET`] bytes before decoding, so decoding threads together never hold
//!   more than that, however many there are; an image that alone needs more is refused.
//!
//! Conversion follows torchvision's loader (`PIL.Image.convert("RGB")`) where the `image` crate
//! agrees with it: greyscale is replicated and alpha is dropped. EXIF orientation is ignored, as
//! PIL's `convert` ignores it. 16-bit samples are scaled to 8 bits with rounding (`v / 257`).

use std::{
    io::Cursor,
    path::Path,
    sync::{Condvar, Mutex, PoisonError},
};

use image::{ColorType, DynamicImage, ImageDecoder, ImageFormat, RgbImage};

use super::{folder::ResizeFilter, IMAGE_SIDE};
use crate::{
    error::{Error, Result},
    safe_fs::{self, MAX_IMAGE_FILE_BYTES},
};

/// The longest side an image may have, in pixels: the largest a JPEG can declare (16 bits).
/// It also bounds the resize's intermediate buffer (see `decode_estimate`).
pub const MAX_IMAGE_SIDE: u32 = 65_535;

/// The most pixels an image may have: PIL's `Image.MAX_IMAGE_PIXELS` (`1024 * 1024 * 1024 // 4
/// // 3`), above which PIL warns of a decompression bomb (and refuses from twice that).
pub const MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Bytes that all image decoding in the process may hold at once, as estimated by
/// `decode_estimate`: 2 GiB. A 24-megapixel JPEG photograph is estimated at about 0.3 GB, a 32x32
/// PNG at a few KB.
pub const DECODE_MEMORY_BUDGET: u64 = 2 << 30;

/// The process-wide budget every decode reserves from.
static DECODE_BUDGET: MemoryBudget = MemoryBudget::new(DECODE_MEMORY_BUDGET);

/// Reads `path` (a PNG, JPEG, BMP, PNM, TIFF or WebP file, sniffed from its content) as 32x32
/// 8-bit RGB: greyscale replicated, alpha dropped, 16-bit samples scaled to 8 bits, resized with
/// `filter` when it is not 32x32 (the aspect ratio is not kept). See the module doc for bounds.
///
/// # Errors
/// [`Error::Io`] naming the file when it is missing, unreadable, not a regular file (a device,
/// FIFO or directory, also behind a link) or larger than `MAX_IMAGE_FILE_BYTES`;
/// [`Error::BadImage`] naming it when it is not in one of those formats, is truncated, does not
/// decode, is empty, is larger than [`MAX_IMAGE_SIDE`] or [`MAX_IMAGE_PIXELS`] (the message gives
/// its dimensions), or would need more than [`DECODE_MEMORY_BUDGET`] to decode.
pub(crate) fn read_rgb32(path: &Path, filter: ResizeFilter) -> Result<RgbImage> {
    read_rgb32_within(path, filter, &DECODE_BUDGET)
}

/// [`read_rgb32`], reserving from `budget`.
fn read_rgb32_within(path: &Path, filter: ResizeFilter, budget: &MemoryBudget) -> Result<RgbImage> {
    let bad = |reason: String| Error::BadImage { path: path.to_path_buf(), reason };
    // First reserve for the file alone; once the header tells the whole need, grow the
    // reservation, or, when that does not fit now, let everything go, wait for the whole amount
    // and read again (so no thread ever waits while holding part of the budget).
    let mut wanted = 0;
    loop {
        let size = std::fs::metadata(path).map_or(0, |m| m.len()).min(MAX_IMAGE_FILE_BYTES);
        let mut held = budget.reserve(wanted.max(size));
        let bytes = safe_fs::read_regular(path, MAX_IMAGE_FILE_BYTES)?;
        let format = sniff(&bytes).map_err(bad)?;
        check_complete(format, &bytes).map_err(bad)?;
        let bytes = if format == ImageFormat::Png { without_unused_png_chunks(&bytes) } else { std::borrow::Cow::Borrowed(&bytes[..]) };
        let mut reader = image::ImageReader::with_format(Cursor::new(&bytes[..]), format);
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(budget.limit);
        reader.limits(limits);
        let decoder = match reader.into_decoder() {
            Ok(decoder) => decoder,
            Err(e) => {
                // A colour layout neither crate reads: said as such, so a dataset can skip it.
                if let Some(super::tiff::Unsupported(reason)) = (format == ImageFormat::Tiff).then(|| super::tiff::unsupported(&bytes)).flatten() {
                    return Err(Error::UnsupportedImage { path: path.to_path_buf(), reason });
                }
                return Err(bad(format!("cannot decode: {e}")));
            }
        };
        let (width, height) = decoder.dimensions();
        check_size(width, height).map_err(bad)?;
        let need = decode_estimate(format, bytes.len() as u64, (width, height), decoder.color_type());
        if need > budget.limit {
            return Err(bad(format!(
                "{width} x {height} pixels of {:?}: decoding needs about {:.1} MiB, more than the {:.1} MiB all decoding may hold at once",
                decoder.color_type(),
                need as f64 / f64::from(1 << 20),
                budget.limit as f64 / f64::from(1 << 20)
            )));
        }
        if !held.try_grow_to(need) {
            wanted = need;
            continue;
        }
        let pil = match format {
            ImageFormat::Pnm => super::pnm::decode_like_pil(&bytes),
            ImageFormat::Tiff => super::tiff::decode_like_pil(&bytes),
            _ => None,
        };
        let rgb = match pil {
            Some(rgb) => rgb.map_err(bad)?,
            None => DynamicImage::from_decoder(decoder).map_err(|e| bad(format!("cannot decode: {e}")))?.into_rgb8(),
        };
        let side = IMAGE_SIDE as u32;
        return Ok(if rgb.dimensions() == (side, side) { rgb } else { image::imageops::resize(&rgb, side, side, filter.into()) });
    }
}

/// The format of `bytes`, when it is one we read.
fn sniff(bytes: &[u8]) -> Result<ImageFormat, String> {
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Bmp | ImageFormat::Pnm)) => Ok(f),
        Ok(f @ (ImageFormat::Tiff | ImageFormat::WebP)) => Ok(f),
        Ok(other) => Err(format!("{other:?} images are not supported; {SUPPORTED} are")),
        Err(_) => Err(format!("not an image file (unrecognised content); {SUPPORTED} are supported")),
    }
}

/// The formats we read, in words.
const SUPPORTED: &str = "PNG, JPEG, BMP, PNM (PPM, PGM), TIFF and WebP";

/// Checks that `bytes` hold the whole container of `format`, where its decoder does not check
/// it itself (BMP, PNM and TIFF decoders fail on a short file; see the tests).
///
/// - JPEG: the markers run from SOI to EOI (ITU-T T.81, B.1.1): segments with a length are
///   skipped whole, entropy-coded data after each SOS runs to the next marker that is not a
///   stuffed `FF 00` or a restart marker. libjpeg reports a missing EOI as "Premature end of
///   JPEG file", and PIL refuses such a file ("image file is truncated").
/// - PNG: the chunks run to a whole IEND chunk (PNG spec, 5.3 and 11.2.5).
/// - WebP: the file holds all the bytes its RIFF header declares (as libwebp requires).
///
/// Bytes after the end (EOI, IEND, the RIFF size) are allowed, as decoders and PIL allow them.
fn check_complete(format: ImageFormat, bytes: &[u8]) -> Result<(), String> {
    match format {
        ImageFormat::Jpeg => jpeg_complete(bytes),
        ImageFormat::Png => png_complete(bytes),
        ImageFormat::WebP => webp_complete(bytes),
        _ => Ok(()),
    }
}

fn truncated(what: &str, len: usize) -> String {
    format!("truncated: the file ends ({len} bytes) before {what}")
}

fn jpeg_complete(b: &[u8]) -> Result<(), String> {
    let short = || truncated("its end-of-image marker (EOI)", b.len());
    let mut i = 2; // past SOI, which guess_format saw
    loop {
        // A marker is 0xFF (fill bytes 0xFF may repeat) and a code; like libjpeg, skip anything
        // else before it.
        while b.get(i).is_some_and(|&x| x != 0xFF) {
            i += 1;
        }
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&code) = b.get(i) else { return Err(short()) };
        i += 1;
        match code {
            0xD9 => return Ok(()),
            // No length: TEM, RSTn (and a stray stuffed zero).
            0x00 | 0x01 | 0xD0..=0xD7 => continue,
            _ => {
                let Some(&[hi, lo]) = b.get(i..i + 2) else { return Err(short()) };
                i += usize::from(u16::from_be_bytes([hi, lo]));
                if i > b.len() {
                    return Err(short());
                }
                if code == 0xDA {
                    // Entropy-coded data: up to the next marker other than FF00 and RSTn.
                    loop {
                        let Some(k) = b[i..].iter().position(|&x| x == 0xFF) else { return Err(short()) };
                        i += k;
                        match b.get(i + 1) {
                            None => return Err(short()),
                            Some(0x00 | 0xD0..=0xD7) => i += 2,
                            Some(0xFF) => i += 1,
                            Some(_) => break,
                        }
                    }
                }
            }
        }
    }
}

fn png_complete(b: &[u8]) -> Result<(), String> {
    png_chunks(b).map(drop)
}

/// The chunks of PNG `b` up to and including `IEND`: where each starts and ends (length, type,
/// data, CRC) and its type.
///
/// # Errors
/// A file that ends before its `IEND` chunk does, saying where.
fn png_chunks(b: &[u8]) -> Result<Vec<(usize, usize, [u8; 4])>, String> {
    let mut chunks = Vec::new();
    let mut i = 8; // past the signature, which guess_format saw
    loop {
        let Some(head) = b.get(i..i + 8) else { return Err(truncated("its IEND chunk", b.len())) };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = [head[4], head[5], head[6], head[7]];
        let end = i.saturating_add(12).saturating_add(len);
        if end > b.len() {
            return Err(truncated(&format!("the end of its {} chunk (at byte {i})", String::from_utf8_lossy(&kind)), b.len()));
        }
        chunks.push((i, end, kind));
        if &kind == b"IEND" {
            return Ok(chunks);
        }
        i = end;
    }
}

/// The PNG chunks whose content is compressed and never used here: the colour profile (`iCCP`;
/// the `image` crate does not apply it, and neither does PIL's `convert("RGB")`) and compressed
/// or international text (`zTXt`, `iTXt`). The PNG decoder would inflate them (a 2 MB chunk can
/// inflate to gigabytes); they are dropped before it sees them.
const UNUSED_PNG_CHUNKS: [&[u8; 4]; 3] = [b"iCCP", b"zTXt", b"iTXt"];

/// `b` (a PNG that [`png_complete`] accepted) without its [`UNUSED_PNG_CHUNKS`]; borrowed when
/// it has none.
fn without_unused_png_chunks(b: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let chunks = png_chunks(b).unwrap_or_default();
    let unused = |kind: &[u8; 4]| UNUSED_PNG_CHUNKS.contains(&kind);
    if !chunks.iter().any(|(_, _, kind)| unused(kind)) {
        return std::borrow::Cow::Borrowed(b);
    }
    let mut out = b[..8].to_vec();
    for (start, end, kind) in chunks {
        if !unused(&kind) {
            out.extend_from_slice(&b[start..end]);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn webp_complete(b: &[u8]) -> Result<(), String> {
    // "RIFF", the size of what follows the first 8 bytes (little-endian), "WEBP": guess_format saw 12 bytes.
    let declared = 8 + u64::from(u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
    if (b.len() as u64) < declared {
        return Err(truncated(&format!("the {declared} bytes its RIFF header declares"), b.len()));
    }
    Ok(())
}

/// Checks the header's dimensions against [`MAX_IMAGE_SIDE`] and [`MAX_IMAGE_PIXELS`].
fn check_size(width: u32, height: u32) -> Result<(), String> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        Err(format!("the image is empty ({width} x {height} pixels)"))
    } else if width.max(height) > MAX_IMAGE_SIDE {
        Err(format!("{width} x {height} pixels: a side is longer than the {MAX_IMAGE_SIDE} pixels an image may have"))
    } else if pixels > MAX_IMAGE_PIXELS {
        Err(format!(
            "{width} x {height} pixels: {pixels} pixels, more than the {MAX_IMAGE_PIXELS} an image may have (PIL's MAX_IMAGE_PIXELS)"
        ))
    } else {
        Ok(())
    }
}

/// The bytes a decode of a `file_len`-byte `format` file of `(width, height)` pixels of `color`
/// holds at its peak, estimated from the header (an upper estimate, not a measurement): the
/// file, the decoded image, the decoder's working memory, the RGB copy, and the resize's
/// buffers.
///
/// - The JPEG decoder copies the file, and a progressive JPEG keeps an `i16` coefficient per
///   sample of up to 4 components (8 bytes a pixel); other decoders are taken to need at most one
///   more decoded image (a TIFF strip, WebP's planes).
/// - The RGB copy is not made when the image already is 8-bit RGB.
/// - `image::imageops::resize` resamples vertically first into an `Rgba32F` image of `width` x 32
///   (16 bytes a pixel), then horizontally into the 32x32 result; this is what bounds a very wide
///   image's resize by its width.
pub(crate) fn decode_estimate(format: ImageFormat, file_len: u64, (width, height): (u32, u32), color: ColorType) -> u64 {
    let (w, h, side) = (u64::from(width), u64::from(height), IMAGE_SIDE as u64);
    let pixels = w * h;
    let decoded = pixels * u64::from(color.bytes_per_pixel());
    let (input, working) = if format == ImageFormat::Jpeg { (2 * file_len, 8 * pixels) } else { (file_len, decoded) };
    let rgb = if color == ColorType::Rgb8 { 0 } else { 3 * pixels };
    let resize = if (w, h) == (side, side) { 0 } else { 16 * w * side + 3 * side * side };
    input + working + decoded + rgb + resize
}

/// A number of bytes that threads reserve from before they allocate, and wait for when it is
/// spent; served first come, first served, so a large reservation is not starved by small ones.
pub(crate) struct MemoryBudget {
    limit: u64,
    state: Mutex<BudgetState>,
    changed: Condvar,
}

struct BudgetState {
    used: u64,
    /// Tickets handed out, and the ticket whose turn it is.
    next_ticket: u64,
    serving: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub(crate) const fn new(limit: u64) -> Self {
        MemoryBudget { limit, state: Mutex::new(BudgetState { used: 0, next_ticket: 0, serving: 0 }), changed: Condvar::new() }
    }

    /// Waits until `bytes` (at most the whole budget) are free and this is the oldest waiter,
    /// then holds them until the reservation is dropped.
    pub(crate) fn reserve(&self, bytes: u64) -> Reservation<'_> {
        let bytes = bytes.min(self.limit);
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        while s.serving != ticket || s.used + bytes > self.limit {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.serving += 1;
        s.used += bytes;
        drop(s);
        self.changed.notify_all();
        Reservation { budget: self, bytes }
    }

    /// Bytes held now.
    #[cfg(test)]
    fn used(&self) -> u64 {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).used
    }
}

/// Bytes held from a [`MemoryBudget`]; given back when dropped.
pub(crate) struct Reservation<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl Reservation<'_> {
    /// Holds `bytes` in all when that fits now without waiting; `false` (holding what it held)
    /// when it does not.
    pub(crate) fn try_grow_to(&mut self, bytes: u64) -> bool {
        if bytes <= self.bytes {
            return true;
        }
        let mut s = self.budget.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.used + (bytes - self.bytes) > self.budget.limit {
            return false;
        }
        s.used += bytes - self.bytes;
        self.bytes = bytes;
        true
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.state.lock().unwrap_or_else(PoisonError::into_inner).used -= self.bytes;
        self.budget.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{atomic::AtomicU64, atomic::Ordering, Arc},
        time::Duration,
    };

    use super::*;

    #[test]
    fn jpeg_markers_must_reach_eoi() {
        // SOI, APP0 (length 4), SOS (length 3, one byte) + entropy data with a stuffed FF00 and
        // an RST, then DHT between scans (progressive), a second SOS + data, EOI, trailing bytes.
        let scan = [0xFF, 0xDA, 0, 3, 9, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56];
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0xFF, 0xD9];
        jpeg.extend(scan);
        jpeg.extend([0xFF, 0xC4, 0, 3, 7]);
        jpeg.extend(scan);
        jpeg.extend([0xFF, 0xFF, 0xD9, b'x', b'y']);
        // The FF D9 inside APP0's payload is data, not the end.
        assert_eq!(jpeg_complete(&jpeg), Ok(()));
        let eoi = jpeg.len() - 2;
        for cut in 2..eoi {
            let err = jpeg_complete(&jpeg[..cut]).unwrap_err();
            assert!(err.contains("truncated") && err.contains("EOI"), "cut at {cut}: {err}");
        }
        // A segment length that runs past the end.
        assert!(jpeg_complete(&[0xFF, 0xD8, 0xFF, 0xE1, 0x40, 0x00, 1, 2]).is_err());
    }

    #[test]
    fn png_chunks_must_reach_iend_and_webp_its_riff_size() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend([0, 0, 0, 2]);
        png.extend(b"tEXtab");
        png.extend([1, 2, 3, 4]);
        png.extend([0, 0, 0, 0]);
        png.extend(b"IEND");
        png.extend([0xAE, 0x42, 0x60, 0x82]);
        assert_eq!(png_complete(&png), Ok(()));
        png.extend(b"trailing");
        assert_eq!(png_complete(&png), Ok(()));
        for cut in 8..png.len() - 8 {
            assert!(png_complete(&png[..cut]).unwrap_err().contains("truncated"), "cut at {cut}");
        }

        let mut webp = b"RIFF".to_vec();
        webp.extend(10u32.to_le_bytes());
        webp.extend(b"WEBPVP8L\x00\x00");
        assert_eq!(webp_complete(&webp), Ok(()));
        let err = webp_complete(&webp[..17]).unwrap_err();
        assert!(err.contains("truncated") && err.contains("18 bytes its RIFF header declares"), "{err}");
    }

    #[test]
    fn sizes_are_bounded_by_side_and_pixel_count() {
        assert_eq!(check_size(32, 32), Ok(()));
        assert_eq!(check_size(65_535, 1_365), Ok(())); // 89,455,275 pixels
        assert!(check_size(0, 5).unwrap_err().contains("empty"));
        let err = check_size(20_000_000, 1).unwrap_err();
        assert!(err.contains("20000000 x 1 pixels") && err.contains("65535"), "{err}");
        let err = check_size(10_000, 10_000).unwrap_err();
        assert!(err.contains("10000 x 10000") && err.contains("89478485"), "{err}");
    }

    #[test]
    fn estimates_count_decoder_conversion_and_resize() {
        // A 32x32 RGB PNG: the file and twice the pixels (decoded, the decoder's working memory).
        assert_eq!(decode_estimate(ImageFormat::Png, 100, (32, 32), ColorType::Rgb8), 100 + 2 * 3072);
        // A 100x50 grey JPEG: 2 copies of the file, 8 B/px of coefficients, 1 decoded, 3 RGB,
        // and the resize: 100 x 32 Rgba32F plus the 32x32 RGB result.
        assert_eq!(decode_estimate(ImageFormat::Jpeg, 10, (100, 50), ColorType::L8), 20 + 5000 * (8 + 1 + 3) + 16 * 100 * 32 + 3072);
        // The largest image within the bounds fits the budget as 8-bit RGB(A) or 16-bit RGB.
        for color in [ColorType::Rgb8, ColorType::Rgba8, ColorType::Rgb16] {
            let e = decode_estimate(ImageFormat::Png, MAX_IMAGE_FILE_BYTES, (65_535, 1_365), color);
            assert!(e <= DECODE_MEMORY_BUDGET, "{color:?}: {e}");
        }
    }

    #[test]
    fn budget_waits_for_room_and_serves_in_order() {
        let budget = Arc::new(MemoryBudget::new(100));
        let a = budget.reserve(60);
        assert_eq!(budget.used(), 60);
        // Over the whole budget: held as the whole budget.
        drop(a);
        let all = budget.reserve(1_000);
        assert_eq!(budget.used(), 100);
        drop(all);

        let mut a = budget.reserve(60);
        assert!(!a.try_grow_to(101));
        assert!(a.try_grow_to(90));
        assert!(!a.try_grow_to(101));
        assert_eq!(budget.used(), 90);
        let got = Arc::new(AtomicU64::new(0));
        let waiter = {
            let (budget, got) = (budget.clone(), got.clone());
            std::thread::spawn(move || {
                let r = budget.reserve(50);
                got.store(budget.used(), Ordering::SeqCst);
                drop(r);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(got.load(Ordering::SeqCst), 0, "the reservation of 50 must wait while 90 of 100 are held");
        drop(a);
        waiter.join().unwrap();
        assert_eq!(got.load(Ordering::SeqCst), 50);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_budget() {
        let budget = Arc::new(MemoryBudget::new(1_000));
        let peak = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (budget, peak) = (budget.clone(), peak.clone());
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        let mut r = budget.reserve((t * 37 + i * 11) % 400 + 1);
                        r.try_grow_to(700);
                        peak.fetch_max(budget.used(), Ordering::SeqCst);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(peak.load(Ordering::SeqCst) <= 1_000);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn an_image_over_the_budget_is_refused_with_its_need() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.png");
        image::RgbImage::new(200, 100).save(&p).unwrap();
        // 200x100 RGB: the file, 2 x 60,000 bytes (decoded and working), the resize's 200 x 32 x 16.
        let small = MemoryBudget::new(100_000);
        let err = read_rgb32_within(&p, ResizeFilter::Bilinear, &small).unwrap_err().to_string();
        assert!(err.contains("big.png") && err.contains("200 x 100 pixels") && err.contains("more than the 0.1 MiB"), "{err}");
        assert_eq!(small.used(), 0);
        let enough = MemoryBudget::new(300_000);
        assert_eq!(read_rgb32_within(&p, ResizeFilter::Bilinear, &enough).unwrap().dimensions(), (32, 32));
    }
}
