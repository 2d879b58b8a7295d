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
