//! The CIFAR-10 binary reader: a round trip of generated records, and a clear error naming the
//! file (and offset) for each malformed input.

mod common;

use common::{class_names, learnable_records, write_cifar_bin, RECORD};
use tch_cifar10::data::cifar;

#[test]
fn round_trips_records_and_class_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, test) = (learnable_records(23, 10, 5), learnable_records(7, 10, 6));
    write_cifar_bin(tmp.path(), &train, &test, &class_names(10));
    // Found through the cifar-10-batches-bin/ subfolder and directly.
    for dir in [tmp.path().to_path_buf(), tmp.path().join(cifar::SUBDIR)] {
        let (tr, te) = cifar::load(&dir).unwrap();
        assert_eq!((tr.len(), te.len()), (23, 7));
        assert_eq!(tr.classes, class_names(10));
        assert_eq!(tr.images.size(), [23, 3, 32, 32]);
        assert_eq!(tr.images.kind(), tch::Kind::Uint8);
        for (split, records) in [(&tr, &train), (&te, &test)] {
            let labels = Vec::<i64>::try_from(&split.labels).unwrap();
            let pixels = Vec::<u8>::try_from(split.images.flatten(0, -1)).unwrap();
            for (i, rec) in records.iter().enumerate() {
                assert_eq!(labels[i], i64::from(rec[0]));
                assert_eq!(&pixels[i * 3072..(i + 1) * 3072], &rec[1..], "image {i}");
            }
        }
    }
}

fn dataset() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_cifar_bin(tmp.path(), &learnable_records(10, 10, 1), &learnable_records(4, 10, 2), &class_names(10));
    (tmp, dir)
}

#[test]
fn truncated_file_names_file_and_offset() {
    let (_tmp, dir) = dataset();
    let path = dir.join("data_batch_3.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(RECORD + 100);
    std::fs::write(&path, bytes).unwrap();
    let err = cifar::load(&dir).unwrap_err().to_string();
    assert!(err.contains("data_batch_3.bin"), "{err}");
    assert!(err.contains("3173") && err.contains("3073-byte records") && err.contains("offset 3073"), "{err}");
}

#[test]
fn label_out_of_range_names_file_and_offset() {
    let (_tmp, dir) = dataset();
    let path = dir.join("test_batch.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[2 * RECORD] = 10;
    std::fs::write(&path, bytes).unwrap();
    let err = cifar::load(&dir).unwrap_err().to_string();
    assert!(err.contains("test_batch.bin") && err.contains("label 10") && err.contains("offset 6146"), "{err}");
}

#[test]
fn missing_directory_says_where_it_looked_and_how_to_get_data() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = cifar::load(&missing).unwrap_err().to_string();
    assert!(err.contains(&missing.join("cifar-10-batches-bin").display().to_string()), "{err}");
    assert!(err.contains("data_batch_1.bin") && err.contains("cifar-10-binary.tar.gz"), "{err}");
}

#[test]
fn missing_test_file_or_class_names_are_named() {
    for gone in ["test_batch.bin", "batches.meta.txt", "data_batch_5.bin"] {
        let (_tmp, dir) = dataset();
        std::fs::remove_file(dir.join(gone)).unwrap();
        let err = cifar::load(&dir).unwrap_err().to_string();
        assert!(err.contains(gone), "{gone}: {err}");
    }
}
