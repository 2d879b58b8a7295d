//! Image-folder datasets for the tests: records (as `super::learnable_records` makes them)
//! written as PNG or JPEG files under `root/<split>/<class>/NNNN.<ext>`.

use std::path::Path;

/// The 32x32 RGB image of a record (label byte, then CHW pixels).
pub fn record_image(record: &[u8]) -> image::RgbImage {
    let px = &record[1..];
    image::RgbImage::from_fn(32, 32, |x, y| {
        let i = (y * 32 + x) as usize;
        image::Rgb([px[i], px[1024 + i], px[2048 + i]])
    })
}

/// Writes each record as `root/split/<classes[label]>/NNNN.ext` (`ext`: png or jpg).
pub fn write_split(root: &Path, split: &str, records: &[Vec<u8>], classes: &[String], ext: &str) {
    for (i, rec) in records.iter().enumerate() {
        let dir = root.join(split).join(&classes[rec[0] as usize]);
        std::fs::create_dir_all(&dir).unwrap();
        record_image(rec).save(dir.join(format!("{i:04}.{ext}"))).unwrap();
    }
}

/// A learnable image-folder dataset (`train/`, `test/`) under a fresh temporary folder.
pub fn synthetic_folder(train: usize, test: usize, classes: &[String], ext: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let k = classes.len() as u8;
    write_split(tmp.path(), "train", &super::learnable_records(train, k, 1), classes, ext);
    write_split(tmp.path(), "test", &super::learnable_records(test, k, 2), classes, ext);
    tmp
}

/// `img` encoded for each of torchvision's `IMG_EXTENSIONS` (in its order), as the `image`
/// crate writes that format: `.pgm` holds the greyscale of `img`, `.webp` is lossless.
pub fn every_format(img: &image::RgbImage) -> Vec<(&'static str, Vec<u8>)> {
    use image::{DynamicImage, ImageFormat as F};
    let encode = |img: DynamicImage, format: F| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    };
    let rgb = DynamicImage::ImageRgb8(img.clone());
    let grey = DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(img.clone()).to_luma8());
    let formats = [("jpg", F::Jpeg), ("jpeg", F::Jpeg), ("png", F::Png), ("ppm", F::Pnm), ("bmp", F::Bmp)];
    let more = [("pgm", F::Pnm), ("tif", F::Tiff), ("tiff", F::Tiff), ("webp", F::WebP)];
    formats
        .into_iter()
        .chain(more)
        .map(|(ext, f)| (ext, encode(if ext == "pgm" { grey.clone() } else { rgb.clone() }, f)))
        .collect()
}

/// Writes a valid PNG of `width` x `height` black pixels, 1-bit greyscale, row by row: a huge
/// image costs one row of memory (`width / 8` bytes) and a small file (zeros compress to almost
/// nothing). Decoded, it is `width * height` bytes of `L8`, and more as RGB.
pub fn write_black_png(path: &Path, width: u32, height: u32) {
    use std::io::Write;
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(file, width, height);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::One);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().unwrap();
    let row = vec![0u8; (width as usize).div_ceil(8)];
    let mut stream = writer.stream_writer().unwrap();
    for _ in 0..height {
        stream.write_all(&row).unwrap();
    }
    stream.finish().unwrap();
}
