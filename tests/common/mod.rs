//! Synthetic CIFAR-10-shaped data for the tests, written in the official binary layout
//! (`cifar-10-batches-bin/`: 3073-byte records, one label byte then 3072 CHW pixel bytes).
//! Nothing here reads real data or the network.
#![allow(dead_code)]

pub mod http;
pub mod images;
pub mod venv;

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use tch_cifar10::{EpochMetrics, EvalMetrics, MemoryReporter, Reporter};

/// Bytes of one record.
pub const RECORD: usize = 3073;

/// A tiny deterministic generator (SplitMix64), so tests need no RNG crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `n` learnable records over `classes` classes: each class has its own colour (a mean per
/// channel) and a bright square in its own place, plus uniform noise; labels cycle 0, 1, 2, ...
pub fn learnable_records(n: usize, classes: u8, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let label = (i % classes as usize) as u8;
            let mean = [40 + 20 * label as i32, 220 - 18 * label as i32, (97 * label as i32) % 200 + 30];
            let (qy, qx) = (4 + 6 * (label as usize / 3 % 4), 4 + 8 * (label as usize % 3));
            let mut rec = Vec::with_capacity(RECORD);
            rec.push(label);
            for c in 0..3 {
                for y in 0..32 {
                    for x in 0..32 {
                        let square = (qy..qy + 6).contains(&y) && (qx..qx + 6).contains(&x);
                        let base = if square { 255 } else { mean[c] };
                        let v = base + rng.below(41) as i32 - 20;
                        rec.push(v.clamp(0, 255) as u8);
                    }
                }
            }
            rec
        })
        .collect()
}

/// Class names `class0`, `class1`, ...
pub fn class_names(classes: u8) -> Vec<String> {
    (0..classes).map(|k| format!("class{k}")).collect()
}

/// Writes `train` split over the five `data_batch_N.bin` files, `test` as `test_batch.bin`, and
/// `batches.meta.txt`, under `root/cifar-10-batches-bin/`. Returns that folder.
pub fn write_cifar_bin(root: &Path, train: &[Vec<u8>], test: &[Vec<u8>], classes: &[String]) -> PathBuf {
    let dir = root.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let per_file = train.len().div_ceil(5);
    for (i, chunk) in train.chunks(per_file.max(1)).chain(std::iter::repeat(&[][..])).take(5).enumerate() {
        std::fs::write(dir.join(format!("data_batch_{}.bin", i + 1)), chunk.concat()).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), test.concat()).unwrap();
    std::fs::write(dir.join("batches.meta.txt"), classes.join("\n") + "\n\n").unwrap();
    dir
}

/// A learnable synthetic dataset in the binary layout under a fresh temporary folder.
pub fn synthetic_cifar(train: usize, test: usize, classes: u8) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar_bin(
        tmp.path(),
        &learnable_records(train, classes, 1),
        &learnable_records(test, classes, 2),
        &class_names(classes),
    );
    tmp
}

/// Records everything and raises the stop flag (as Ctrl-C does) after epoch `stop_after`.
pub struct StopAfter<'a> {
    pub inner: MemoryReporter,
    pub stop_after: usize,
    pub flag: &'a AtomicBool,
}

impl Reporter for StopAfter<'_> {
    fn epoch_end(&mut self, m: &EpochMetrics) {
        self.inner.epoch_end(m);
        if m.epoch == self.stop_after {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
    fn evaluated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.inner.evaluated(epoch, m);
    }
    fn validated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.inner.validated(epoch, m);
    }
}

/// Makes a finished run one killed before its summary (`train --resume` refuses a finished run),
/// so that what a resume does can be tried on it.
pub fn unfinish(run: &Path) {
    std::fs::remove_file(run.join("summary.json")).unwrap();
}
