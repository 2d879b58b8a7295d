//! Image-folder datasets, as torchvision's `ImageFolder`: `DIR/train/<class>/...` and
//! `DIR/test/<class>/...`, files with `ImageFolder`'s extensions ([`EXTENSIONS`]), classes from
//! the sorted subfolder names of `train/` (any number from 2 up). Samples are ordered as
//! `ImageFolder` orders them (class by class; in a class, folder by folder and file by file,
//! sorted), so a shuffle replayed from PyTorch picks the same images.
//!
//! Unlike `ImageFolder`, hidden files and folders (names starting with `.`) are skipped, and
//! each folder of a class is walked once (by device and inode), where `os.walk(followlinks=True)`
//! walks a folder again for every symbolic link that leads to it, and around a link to a parent
//! folder until the path is too long. Everything skipped is counted, and said in one warning per
//! split (files by extension, hidden entries, folders reached again through a link).
//!
//! Images are read by [`image_file`](super::image_file) (formats, bounds, conversion to RGB as
//! torchvision's loader does) and those that are not 32x32 are resized with the chosen
//! [`ResizeFilter`]. Decoding runs in parallel (rayon), once per run, into the resident `uint8`
//! tensor the training loop gathers batches from; decoding threads together hold at most
//! [`DECODE_MEMORY_BUDGET`](super::image_file::DECODE_MEMORY_BUDGET) bytes.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashSet},
    ffi::{OsStr, OsString},
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{cifar::IMAGE_BYTES, image_file, Dataset, CHANNELS, IMAGE_SIDE};
use crate::error::{Error, Result};

/// Subfolder of the training split.
pub const TRAIN_DIR: &str = "train";
/// Subfolder of the test split.
pub const TEST_DIR: &str = "test";
/// File extensions read as images (any case): torchvision's `IMG_EXTENSIONS`, in its order.
pub const EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];

/// The filter that resizes images that are not 32x32 (see `image::imageops::FilterType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear (triangle), antialiased when shrinking, as torchvision's default `Resize`.
    #[default]
    Bilinear,
    /// Bicubic (Catmull-Rom).
    Bicubic,
    /// Gaussian.
    Gaussian,
    /// Lanczos with a window of 3.
    Lanczos3,
}

impl From<ResizeFilter> for image::imageops::FilterType {
    fn from(f: ResizeFilter) -> Self {
        use image::imageops::FilterType as F;
        match f {
            ResizeFilter::Nearest => F::Nearest,
            ResizeFilter::Bilinear => F::Triangle,
            ResizeFilter::Bicubic => F::CatmullRom,
            ResizeFilter::Gaussian => F::Gaussian,
            ResizeFilter::Lanczos3 => F::Lanczos3,
        }
    }
}

/// Loads `dir/train` and `dir/test`, decoding on `threads` threads (`None`: one per CPU), and
/// warns (one line per split) about what the scan skipped.
///
/// # Errors
/// [`Error::BadDataset`] for a missing split folder, fewer than 2 classes, an empty class
/// folder, or test classes that are not the training classes; [`Error::BadImage`] naming an
/// image that cannot be used (see [`image_file`](super::image_file)); [`Error::Io`].
pub fn load(dir: &Path, filter: ResizeFilter, threads: Option<usize>) -> Result<(Dataset, Dataset)> {
    let train = scan(&dir.join(TRAIN_DIR))?;
    let test = scan(&dir.join(TEST_DIR))?;
    for (split, scanned) in [(TRAIN_DIR, &train), (TEST_DIR, &test)] {
        for line in scanned.skipped.warnings(&dir.join(split)) {
            tracing::warn!("{line}");
        }
    }
    if test.classes != train.classes {
        let missing: Vec<_> = train.classes.iter().filter(|c| !test.classes.contains(c)).collect();
        let extra: Vec<_> = test.classes.iter().filter(|c| !train.classes.contains(c)).collect();
        return Err(Error::BadDataset {
            path: dir.join(TEST_DIR),
            reason: format!(
                "the test classes are not the training classes: missing {missing:?}, not in {TRAIN_DIR}/ {extra:?}"
            ),
        });
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or(0)).build().map_err(|e| Error::BadDataset {
        path: dir.to_path_buf(),
        reason: format!("cannot start decoding threads: {e}"),
    })?;
    let decode_split = |files: &Files| pool.install(|| decode_all(files, filter, &train.classes));
    Ok((decode_split(&train.files)?, decode_split(&test.files)?))
}

/// `--split-test FRACTION`: loads one class-folder tree, `dir/<class>/...` (walked as a split
/// folder is), and splits it into (train, test) as PyTorch's
/// `random_split(ImageFolder(dir), [n - k, k], generator=torch.Generator().manual_seed(seed))`,
/// `k = round(fraction * n)` ([`super::split::holdout`], the split `--val-size` makes).
///
/// # Errors
/// As [`load`]; [`Error::BadDataset`] when `dir` holds `train/` and `test/` (then it is not one
/// tree: drop `--split-test`); [`Error::InvalidConfig`] for `split-test` when the fraction leaves
/// no test or no training image.
pub fn load_tree(dir: &Path, filter: ResizeFilter, threads: Option<usize>, fraction: f64, seed: i64) -> Result<(Dataset, Dataset)> {
    if dir.join(TRAIN_DIR).is_dir() && dir.join(TEST_DIR).is_dir() {
        return Err(Error::BadDataset {
            path: dir.to_path_buf(),
            reason: format!(
                "holds {TRAIN_DIR}/ and {TEST_DIR}/, a split already: drop --split-test (it splits one tree of class folders, {}/<class>/...)",
                dir.display()
            ),
        });
    }
    let tree = scan(dir)?;
    for line in tree.skipped.warnings(dir) {
        tracing::warn!("{line}");
    }
    let n = tree.files.len();
    let k = (fraction * n as f64).round() as usize;
    if k == 0 || k >= n {
        return Err(Error::InvalidConfig {
            field: "split-test",
            value: format!("{fraction:?}"),
            expected: format!("a fraction that leaves test and training images: {k} of the {n} images in {} would be the test set", dir.display()),
        });
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or(0)).build().map_err(|e| Error::BadDataset {
        path: dir.to_path_buf(),
        reason: format!("cannot start decoding threads: {e}"),
    })?;
    let all = pool.install(|| decode_all(&tree.files, filter, &tree.classes))?;
    let (train, test) = super::split::holdout(&all, k, seed)?;
    tracing::info!("split {} into {} training and {k} test images (--split-test {fraction}, seed {seed})", dir.display(), n - k);
    Ok((train, test))
}

/// Loads only `dir/test` (for `eval`): its classes are the sorted subfolder names of `test/`,
/// decoded on `threads` threads with `filter` as [`load`] does.
///
/// # Errors
/// As [`load`], for the test split.
pub fn load_test(dir: &Path, filter: ResizeFilter, threads: Option<usize>) -> Result<Dataset> {
    let test = scan(&dir.join(TEST_DIR))?;
    for line in test.skipped.warnings(&dir.join(TEST_DIR)) {
        tracing::warn!("{line}");
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or(0)).build().map_err(|e| Error::BadDataset {
        path: dir.to_path_buf(),
        reason: format!("cannot start decoding threads: {e}"),
    })?;
    pool.install(|| decode_all(&test.files, filter, &test.classes))
}

/// Image files with their labels.
type Files = Vec<(PathBuf, i64)>;

/// One split as scanned: class names (sorted subfolders), every image file with its label in
/// `ImageFolder` order, and what was skipped.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) classes: Vec<String>,
    pub(crate) files: Files,
    pub(crate) skipped: Skipped,
}

/// What a scan left out, and why.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Skipped {
    /// Files that are not images by their extension, by lower-case extension with its dot
    /// (`""` for none).
    pub(crate) by_extension: BTreeMap<String, usize>,
    /// Hidden files (names starting with `.`).
    pub(crate) hidden_files: usize,
    /// Hidden folders, not walked.
    pub(crate) hidden_folders: usize,
    /// Paths (through symbolic links) of folders already walked in the same class, not walked again.
    pub(crate) walked_already: Vec<PathBuf>,
}

impl Skipped {
    /// The warnings for a split at `split`: one line for skipped entries (with counts by
    /// extension), one for folders reached again through links; none when nothing was skipped.
    pub(crate) fn warnings(&self, split: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        let mut parts: Vec<String> = self
            .by_extension
            .iter()
            .map(|(ext, n)| if ext.is_empty() { format!("{n} without extension") } else { format!("{n} {}", crate::report::escape::escape_control(ext)) })
            .collect();
        let plural = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
        if self.hidden_files > 0 {
            parts.push(format!("{} (name starts with '.')", plural(self.hidden_files, "hidden file")));
        }
        if self.hidden_folders > 0 {
            parts.push(format!("{} (not walked)", plural(self.hidden_folders, "hidden folder")));
        }
        let files: usize = self.by_extension.values().sum::<usize>() + self.hidden_files;
        if files + self.hidden_folders > 0 {
            let what = match (files, self.hidden_folders) {
                (f, 0) => plural(f, "file"),
                (0, d) => plural(d, "folder"),
                (f, d) => format!("{} and {}", plural(f, "file"), plural(d, "folder")),
            };
            lines.push(format!(
                "skipped {what} in {}: {} (images are {})",
                split.display(),
                parts.join(", "),
                EXTENSIONS.map(|e| format!(".{e}")).join(" ")
            ));
        }
        if let Some(first) = self.walked_already.first() {
            let n = self.walked_already.len();
            let more = if n > 1 { format!(" and {} more", n - 1) } else { String::new() };
            lines.push(format!(
                "walked each folder of a class in {} once: skipped {} that symbolic links lead to again ({}{more})",
                split.display(),
                plural(n, "folder"),
                first.display()
            ));
        }
        lines
    }
}

/// Scans one split folder (see [`Scan`]).
pub(crate) fn scan(split: &Path) -> Result<Scan> {
    let bad = |reason: String| Error::BadDataset { path: split.to_path_buf(), reason };
    if !split.is_dir() {
        return Err(bad("no such folder; an image-folder dataset has train/<class>/ and test/<class>/".to_string()));
    }
    let mut classes = Vec::new();
    let mut skipped = Skipped::default();
    for entry in fs::read_dir(split).map_err(Error::io(split))? {
        let path = entry.map_err(Error::io(split))?.path();
        let name = path.file_name().unwrap_or_default().to_os_string();
        let is_dir = path.is_dir();
        if is_hidden(&name) {
            *(if is_dir { &mut skipped.hidden_folders } else { &mut skipped.hidden_files }) += 1;
        } else if is_dir {
            classes.push(name.into_string().map_err(|n| bad(format!("class folder name {n:?} is not UTF-8")))?);
        } else {
            // A file beside the class folders: in no class.
            *skipped.by_extension.entry(extension(&path)).or_default() += 1;
        }
    }
    classes.sort();
    if classes.len() < 2 {
        return Err(bad(format!("found {} class folder(s) {classes:?}; need at least 2", classes.len())));
    }
    let mut files = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = split.join(class);
        let start = files.len();
        walk(&class_dir, label as i64, &mut files, &mut skipped)?;
        if files.len() == start {
            return Err(Error::BadDataset {
                path: class_dir,
                reason: format!("class folder holds no image ({})", EXTENSIONS.join(", ")),
            });
        }
    }
    Ok(Scan { classes, files, skipped })
}

/// Appends the images under `dir` (recursively, following links) in `sorted(os.walk(dir))`
/// order: folders sorted by their whole path as a string, files by name within each. (That is
/// not depth-first: `a/b` < `a/b c` < `a/b/c`, as ' ' sorts before '/'.) Folders are taken from
/// a min-heap of paths (bytes), so they come out in that order; a folder (device and inode) met
/// again, through a link, is skipped, so the first path in that order is the one walked and the
/// walk ends even around a link to a parent folder. Skipped entries are counted in `skipped`.
fn walk(dir: &Path, label: i64, files: &mut Files, skipped: &mut Skipped) -> Result<()> {
    let mut walked = HashSet::new();
    let mut pending = BinaryHeap::from([Reverse(OsString::from(dir.as_os_str()))]);
    while let Some(Reverse(folder)) = pending.pop() {
        let folder = PathBuf::from(folder);
        let meta = fs::metadata(&folder).map_err(Error::io(&folder))?;
        if !walked.insert((meta.dev(), meta.ino())) {
            skipped.walked_already.push(folder);
            continue;
        }
        let mut here = Vec::new();
        for entry in fs::read_dir(&folder).map_err(Error::io(&folder))? {
            let path = entry.map_err(Error::io(&folder))?.path();
            let is_dir = path.is_dir();
            if is_hidden(path.file_name().unwrap_or_default()) {
                *(if is_dir { &mut skipped.hidden_folders } else { &mut skipped.hidden_files }) += 1;
            } else if is_dir {
                pending.push(Reverse(path.into_os_string()));
            } else if is_image_name(&path) {
                // Whatever it is (a link to a device, a FIFO, a dangling link), reading it
                // says what is wrong, naming it.
                here.push(path);
            } else {
                *skipped.by_extension.entry(extension(&path)).or_default() += 1;
            }
        }
        here.sort();
        files.extend(here.into_iter().map(|p| (p, label)));
    }
    Ok(())
}

/// The image files under `dir` (recursively, as a class folder is walked: [`EXTENSIONS`], hidden
/// entries skipped, each folder once), in `sorted(os.walk(dir))` order, for `predict DIR`. What
/// was skipped is logged as one warning.
///
/// # Errors
/// [`Error::Io`] naming a folder that cannot be read; [`Error::BadDataset`] naming `dir` when it
/// holds no image.
pub fn images_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut skipped = Skipped::default();
    walk(dir, 0, &mut files, &mut skipped)?;
    for line in skipped.warnings(dir) {
        tracing::warn!("{line}");
    }
    if files.is_empty() {
        return Err(Error::BadDataset { path: dir.to_path_buf(), reason: format!("holds no image ({})", EXTENSIONS.join(", ")) });
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Whether `path` has one of [`EXTENSIONS`] (any case): an image by its name, as image folders
/// are read.
pub fn has_image_extension(path: &Path) -> bool {
    is_image_name(path)
}

/// Whether `path` has one of [`EXTENSIONS`] (any case).
fn is_image_name(path: &Path) -> bool {
    path.extension().and_then(OsStr::to_str).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// `.ext` in lower case, or `""` when there is none.
fn extension(path: &Path) -> String {
    path.extension().map(|e| format!(".{}", e.to_string_lossy().to_lowercase())).unwrap_or_default()
}

/// Decodes every file in parallel into one split. A file in a layout this program does not read
/// ([`Error::UnsupportedImage`]: a YCbCr or 4-bit TIFF) is left out with one warning for the
/// split, naming the first; any other bad image is an error.
fn decode_all(files: &[(PathBuf, i64)], filter: ResizeFilter, classes: &[String]) -> Result<Dataset> {
    let mut pixels = vec![0u8; files.len() * IMAGE_BYTES];
    let unsupported = std::sync::Mutex::new(Vec::new());
    pixels.par_chunks_mut(IMAGE_BYTES).zip(files.par_iter()).enumerate().try_for_each(|(i, (out, (path, _)))| {
        match decode(path, filter, out) {
            Err(Error::UnsupportedImage { reason, .. }) => {
                unsupported.lock().expect("no panic while held").push((i, reason));
                Ok(())
            }
            other => other,
        }
    })?;
    let mut unsupported = unsupported.into_inner().expect("no panic while held");
    unsupported.sort_by_key(|(i, _)| *i);
    if let Some((first, reason)) = unsupported.first() {
        tracing::warn!(
            "skipped {} image(s) this program does not read, as if absent (the first: {}: {reason})",
            unsupported.len(),
            crate::report::escape::escape_control(&files[*first].0.display().to_string())
        );
        let keep: Vec<usize> = (0..files.len()).filter(|i| unsupported.binary_search_by_key(i, |(j, _)| *j).is_err()).collect();
        let kept_pixels: Vec<u8> = keep.iter().flat_map(|&i| pixels[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES].iter().copied()).collect();
        let kept_files: Vec<(PathBuf, i64)> = keep.iter().map(|&i| files[i].clone()).collect();
        return Ok(assemble(kept_pixels, &kept_files, classes));
    }
    Ok(assemble(pixels, files, classes))
}

/// The split of `pixels` (one CHW image per file) labelled as `files`.
fn assemble(pixels: Vec<u8>, files: &[(PathBuf, i64)], classes: &[String]) -> Dataset {
    let labels: Vec<i64> = files.iter().map(|&(_, label)| label).collect();
    let images = Tensor::from_slice(&pixels).view([files.len() as i64, CHANNELS, IMAGE_SIDE, IMAGE_SIDE]);
    Dataset { images, labels: Tensor::from_slice(&labels), classes: classes.to_vec() }
}

/// Decodes one image into `out` as 32x32 RGB, CHW (as `ToTensor()` lays it out).
fn decode(path: &Path, filter: ResizeFilter, out: &mut [u8]) -> Result<()> {
    let rgb = image_file::read_rgb32(path, filter)?;
    let plane = (IMAGE_SIDE * IMAGE_SIDE) as usize;
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..CHANNELS as usize {
            out[c * plane + i] = px[c];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn touch(root: &Path, names: &[&str]) {
        for f in names {
            let p = root.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, b"").unwrap();
        }
    }

    fn walked(d: &Path) -> (Vec<String>, Skipped) {
        let (mut files, mut skipped) = (Vec::new(), Skipped::default());
        walk(d, 3, &mut files, &mut skipped).unwrap();
        assert!(files.iter().all(|&(_, l)| l == 3));
        (files.iter().map(|(p, _)| p.strip_prefix(d).unwrap().to_str().unwrap().to_string()).collect(), skipped)
    }

    #[test]
    fn walk_orders_as_os_walk_sorted() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        touch(d, &["b.png", "a.PNG", "sub/x.jpg", "sub/deeper/w.png", "sub b/y.jpeg", "notes.txt", ".hidden.png", ".git/z.png"]);
        let (names, skipped) = walked(d);
        // Python: [os.path.join(r, f) for r, _, fs in sorted(os.walk(d)) for f in sorted(fs)],
        // less the hidden and non-image files: "sub" < "sub b" < "sub/deeper" (' ' < '/').
        assert_eq!(names, ["a.PNG", "b.png", "sub/x.jpg", "sub b/y.jpeg", "sub/deeper/w.png"]);
        let want = Skipped { by_extension: [(".txt".to_string(), 1)].into(), hidden_files: 1, hidden_folders: 1, walked_already: vec![] };
        assert_eq!(skipped, want);
    }

    #[test]
    fn every_imagefolder_extension_is_an_image_and_the_rest_are_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        touch(d, &["a.jpg", "b.JPEG", "c.png", "d.ppm", "e.bmp", "f.pgm", "g.tif", "h.TIFF", "i.webp"]);
        touch(d, &["j.txt", "k.txt", "l.gif", "m", "n.tar.gz", "o.Txt"]);
        let (names, skipped) = walked(d);
        assert_eq!(names, ["a.jpg", "b.JPEG", "c.png", "d.ppm", "e.bmp", "f.pgm", "g.tif", "h.TIFF", "i.webp"]);
        let by_ext: Vec<(&str, usize)> = skipped.by_extension.iter().map(|(e, n)| (e.as_str(), *n)).collect();
        assert_eq!(by_ext, [("", 1), (".gif", 1), (".gz", 1), (".txt", 3)]);
        let lines = skipped.warnings(Path::new("DIR/train"));
        assert_eq!(lines.len(), 1);
        let want = "skipped 6 files in DIR/train: 1 without extension, 1 .gif, 1 .gz, 3 .txt (images are .jpg .jpeg";
        assert!(lines[0].starts_with(want), "{}", lines[0]);
        assert!(Skipped::default().warnings(Path::new("x")).is_empty());
    }

    #[test]
    fn links_to_a_walked_folder_are_walked_once() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        touch(d, &["a.png", "sub/b.png"]);
        // One link to the class folder itself (os.walk(followlinks=True) reads it 40 more times,
        // until the path has too many links), then two: l1/l2/l1/... never ends without a check.
        symlink(".", d.join("l1")).unwrap();
        let (names, skipped) = walked(d);
        assert_eq!(names, ["a.png", "sub/b.png"]);
        assert_eq!(skipped.walked_already, [d.join("l1")]);
        symlink(".", d.join("l2")).unwrap();
        // A link to a subfolder: sorted before "sub", so "link-sub" is the path walked.
        symlink("sub", d.join("link-sub")).unwrap();
        let (names, skipped) = walked(d);
        assert_eq!(names, ["a.png", "link-sub/b.png"]);
        assert_eq!(skipped.walked_already, [d.join("l1"), d.join("l2"), d.join("sub")]);
        let lines = skipped.warnings(Path::new("DIR/train"));
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert!(line.contains("skipped 3 folders that symbolic links lead to again") && line.contains("/l1 and 2 more"), "{line}");
    }

    #[test]
    fn scan_counts_files_beside_the_classes_and_hidden_class_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        touch(d, &["a/1.png", "b/2.bmp", "b/readme.md", "labels.csv", ".DS_Store", ".ipynb_checkpoints/3.png"]);
        let scan = scan(d).unwrap();
        assert_eq!(scan.classes, ["a", "b"]);
        assert_eq!(scan.files.len(), 2);
        let lines = scan.skipped.warnings(d);
        assert!(
            lines[0].contains("skipped 3 files and 1 folder in")
                && lines[0].contains(": 1 .csv, 1 .md, 1 hidden file (name starts with '.'), 1 hidden folder (not walked)"),
            "{lines:?}"
        );
    }
}
