//! The verified download against a real HTTP server on 127.0.0.1 serving archives built here:
//! success, a second run without a request, a corrupted body, cut connections (retried and
//! resumed with `Range`), HTTP errors, a stalled server, an archive missing a member, and an
//! incomplete folder in the way. After every failure the target folder is as it was.

mod common;

use std::{
    fs,
    io::{Read, Write},
    path::Path,
    time::Duration,
};

use common::http::{cifar_archive, md5_hex, sha256_hex, Plan, Server};
use tch_cifar10::{
    data::{cifar, download},
    Checksum, DownloadOptions, Error,
};

/// A synthetic `cifar-10-batches-bin/` (60 training, 20 test records) and its archive.
fn dataset_and_archive(skip: &[&str]) -> (tempfile::TempDir, Vec<u8>) {
    let src = common::synthetic_cifar(60, 20, 3);
    let archive = cifar_archive(src.path(), skip);
    (src, archive)
}

fn options(data_dir: &Path, url: &str, archive: &[u8]) -> DownloadOptions {
    DownloadOptions {
        url: url.to_string(),
        checksum: Checksum::sha256(&sha256_hex(archive)).unwrap(),
        attempts: 3,
        retry_delay: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
        progress: false,
        ..DownloadOptions::new(data_dir)
    }
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn assert_same_files(got: &Path, want: &Path) {
    for name in common::http::MEMBERS {
        assert_eq!(fs::read(got.join(name)).unwrap(), fs::read(want.join(name)).unwrap(), "{name}");
    }
}

#[test]
fn downloads_verifies_and_unpacks_then_a_second_run_makes_no_request() {
    let (src, archive) = dataset_and_archive(&[]);
    let server = Server::start(archive.clone(), vec![], Plan::Serve);
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("data"); // created on the way
    let mut opts = options(&dir, &server.url, &archive);

    let got = download::ensure(&opts).unwrap();
    assert_eq!(got, dir.join(cifar::SUBDIR));
    assert_same_files(&got, &src.path().join(cifar::SUBDIR));
    assert!(got.join("readme.html").is_file());
    // Nothing else left behind: no .part file, no temporary folder.
    assert_eq!(listing(&dir), [cifar::SUBDIR]);
    assert_eq!(server.requests(), 1);
    assert_eq!(server.ranges(), [None]);
    let (train, test) = cifar::load(&dir).unwrap();
    assert_eq!((train.len(), test.len()), (60, 20));

    // Already complete: no request, even to a server that would fail, and with an MD5.
    opts.checksum = Checksum::md5(&md5_hex(&archive)).unwrap();
    assert_eq!(download::ensure(&opts).unwrap(), got);
    opts.url = Server::start(vec![], vec![], Plan::Status(500)).url;
    download::ensure(&opts).unwrap();
    assert_eq!(server.requests(), 1);
}

#[test]
fn a_corrupted_body_is_a_checksum_error_and_leaves_the_folder_as_it_was() {
    let (_src, archive) = dataset_and_archive(&[]);
    let mut corrupt = archive.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    let server = Server::start(corrupt.clone(), vec![], Plan::Serve);
    let data = tempfile::tempdir().unwrap();
    fs::write(data.path().join("notes.txt"), "mine").unwrap();

    let err = download::ensure(&options(data.path(), &server.url, &archive)).unwrap_err();
    match &err {
        Error::Checksum { algorithm, expected, actual, .. } => {
            assert_eq!((*algorithm, expected.as_str(), actual.as_str()), ("sha256", sha256_hex(&archive).as_str(), sha256_hex(&corrupt).as_str()));
        }
        other => panic!("expected a checksum error, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("expected") && msg.contains(&sha256_hex(&corrupt)), "{msg}");
    assert_eq!(listing(data.path()), ["notes.txt"]);
    assert_eq!(server.requests(), 1, "a checksum mismatch of a fresh download is not retried");
}

#[test]
fn a_cut_connection_is_retried_and_resumed_with_range() {
    let (src, archive) = dataset_and_archive(&[]);
    let server = Server::start(archive.clone(), vec![Plan::CutAfter(1000), Plan::CutAfter(500)], Plan::Serve);
    let data = tempfile::tempdir().unwrap();
    let got = download::ensure(&options(data.path(), &server.url, &archive)).unwrap();
    assert_same_files(&got, &src.path().join(cifar::SUBDIR));
    assert_eq!(server.ranges(), [None, Some("bytes=1000-".to_string()), Some("bytes=1500-".to_string())]);
    assert_eq!(listing(data.path()), [cifar::SUBDIR]);
}

#[test]
fn a_connection_cut_every_time_fails_naming_the_cause_and_the_next_run_resumes() {
    let (src, archive) = dataset_and_archive(&[]);
    let cutting = Server::start(archive.clone(), vec![], Plan::CutAfter(700));
    let data = tempfile::tempdir().unwrap();
    let mut opts = options(data.path(), &cutting.url, &archive);

    let err = download::ensure(&opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Download { .. }), "{msg}");
    assert!(msg.contains(&cutting.url) && msg.contains(&format!("of {} bytes", archive.len())), "{msg}");
    assert!(msg.contains("gave up after 3 tries") && msg.contains("next run resumes"), "{msg}");
    assert_eq!(cutting.requests(), 3);
    assert!(!data.path().join(cifar::SUBDIR).exists());
    // The bytes received are kept as the .part file, and nothing else.
    let part = data.path().join(format!("{}.part", download::ARCHIVE_NAME));
    assert_eq!(fs::read(&part).unwrap(), archive[..2100]);
    assert_eq!(listing(data.path()).len(), 1);

    // A server that ignores Range: the kept bytes are replaced, not spliced.
    let whole = Server::start(archive.clone(), vec![], Plan::IgnoreRange);
    opts.url = whole.url.clone();
    let got = download::ensure(&opts).unwrap();
    assert_eq!(whole.ranges(), [Some("bytes=2100-".to_string())]);
    assert_same_files(&got, &src.path().join(cifar::SUBDIR));
    assert!(!part.exists());
}

#[test]
fn a_kept_part_of_another_file_is_downloaded_again_from_the_start() {
    let (src, archive) = dataset_and_archive(&[]);
    let server = Server::start(archive.clone(), vec![], Plan::Serve);
    let data = tempfile::tempdir().unwrap();
    fs::write(data.path().join(format!("{}.part", download::ARCHIVE_NAME)), vec![7u8; 300]).unwrap();
    let got = download::ensure(&options(data.path(), &server.url, &archive)).unwrap();
    assert_same_files(&got, &src.path().join(cifar::SUBDIR));
    assert_eq!(server.ranges(), [Some("bytes=300-".to_string()), None]);
}

#[test]
fn http_errors_name_the_status_and_only_server_errors_are_retried() {
    let (_src, archive) = dataset_and_archive(&[]);
    let data = tempfile::tempdir().unwrap();

    let missing = Server::start(archive.clone(), vec![], Plan::Status(404));
    let err = download::ensure(&options(data.path(), &missing.url, &archive)).unwrap_err().to_string();
    assert!(err.contains("HTTP status 404") && err.contains(&missing.url), "{err}");
    assert_eq!(missing.requests(), 1, "404 is not retried");
    assert!(listing(data.path()).is_empty());

    let flaky = Server::start(archive.clone(), vec![Plan::Status(503), Plan::Status(429)], Plan::Serve);
    download::ensure(&options(data.path(), &flaky.url, &archive)).unwrap();
    assert_eq!(flaky.requests(), 3);
}

#[test]
fn a_stalled_server_times_out() {
    let (_src, archive) = dataset_and_archive(&[]);
    let server = Server::start(archive.clone(), vec![], Plan::Stall(Duration::from_secs(3)));
    let data = tempfile::tempdir().unwrap();
    let opts = DownloadOptions { attempts: 1, timeout: Duration::from_millis(200), ..options(data.path(), &server.url, &archive) };
    let t0 = std::time::Instant::now();
    let err = download::ensure(&opts).unwrap_err().to_string();
    assert!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
    assert!(err.to_lowercase().contains("timeout") || err.contains("timed out"), "{err}");
    assert!(listing(data.path()).is_empty());
}

#[test]
fn an_archive_missing_a_member_is_refused_and_nothing_is_installed() {
    let (_src, archive) = dataset_and_archive(&["test_batch.bin"]);
    let server = Server::start(archive.clone(), vec![], Plan::Serve);
    let data = tempfile::tempdir().unwrap();
    let err = download::ensure(&options(data.path(), &server.url, &archive)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::BadArchive { .. }), "{msg}");
    assert!(msg.contains("cifar-10-batches-bin/test_batch.bin is missing"), "{msg}");
    assert!(listing(data.path()).is_empty(), "no target, temporary folder or .part: {:?}", listing(data.path()));
}

#[test]
fn with_the_official_checksum_every_batch_must_have_the_official_size() {
    // A complete-looking folder of the wrong size is not taken for the official dataset...
    let src = common::synthetic_cifar(60, 20, 3);
    let server = Server::start(vec![], vec![], Plan::Status(404));
    let opts = DownloadOptions { url: server.url.clone(), attempts: 1, progress: false, ..DownloadOptions::new(src.path()) };
    let err = download::ensure(&opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::IncompleteData { .. }), "{msg}");
    assert!(msg.contains("data_batch_1.bin is 36876 bytes, expected 30730000"), "{msg}");
    assert_eq!(server.requests(), 0);
}

#[test]
fn an_incomplete_folder_in_the_way_is_left_alone() {
    let (src, archive) = dataset_and_archive(&[]);
    let server = Server::start(archive.clone(), vec![], Plan::Serve);
    let data = tempfile::tempdir().unwrap();
    let target = data.path().join(cifar::SUBDIR);
    fs::create_dir(&target).unwrap();
    fs::copy(src.path().join(cifar::SUBDIR).join("data_batch_1.bin"), target.join("data_batch_1.bin")).unwrap();
    let err = download::ensure(&options(data.path(), &server.url, &archive)).unwrap_err().to_string();
    assert!(err.contains("data_batch_2.bin is missing") && err.contains("move it away"), "{err}");
    assert_eq!(listing(&target), ["data_batch_1.bin"]);
    assert_eq!(server.requests(), 0);

    // An empty folder is filled.
    fs::remove_file(target.join("data_batch_1.bin")).unwrap();
    download::ensure(&options(data.path(), &server.url, &archive)).unwrap();
    assert_same_files(&target, &src.path().join(cifar::SUBDIR));
}

/// The binary: `download` with a mirror given by flags or by environment variables, then
/// `train --download` training on what is there without a request.
#[test]
fn the_download_command_and_train_download() {
    use std::process::Command;
    let (_src, archive) = dataset_and_archive(&[]);
    let server = Server::start(archive.clone(), vec![], Plan::Serve);
    let data = tempfile::tempdir().unwrap();
    let bin = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tch-cifar10"));
        for var in [download::URL_ENV, download::SHA256_ENV, download::MD5_ENV] {
            c.env_remove(var);
        }
        c
    };
    let dir = data.path().join("by-flags");
    let o = bin()
        .args(["download", "--data-dir", dir.to_str().unwrap(), "--url", &server.url, "--sha256", &sha256_hex(&archive)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("CIFAR-10 is ready in {}", dir.join(cifar::SUBDIR).display())), "{stdout}");

    let dir = data.path().join("by-env");
    let o = bin()
        .args(["download", "--data-dir", dir.to_str().unwrap()])
        .env(download::URL_ENV, &server.url)
        .env(download::MD5_ENV, md5_hex(&archive))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(server.requests(), 2);

    // A wrong checksum: exit status 1, the message names both digests.
    let o = bin()
        .args(["download", "--data-dir", data.path().join("bad").to_str().unwrap(), "--url", &server.url, "--md5", &"0".repeat(32)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("download failed") && err.contains(&md5_hex(&archive)) && err.contains(&"0".repeat(32)), "{err}");

    // train --download: the data is there, so no request is made, and it trains.
    let o = bin()
        .args(["train", "--download", "--data-dir", dir.to_str().unwrap(), "--epochs", "1", "--batch-size", "20", "--device", "cpu"])
        .args(["--out", data.path().join("run").to_str().unwrap(), "--url", &server.url, "--md5", &md5_hex(&archive)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Accuracy of the network on the 20 test images"));
    assert_eq!(server.requests(), 3);
}

/// Serves `archive` (with its own SHA-256) to a fresh data folder; returns the error and the
/// folder, after checking that the folder holds nothing afterwards.
fn refused(archive: Vec<u8>) -> (String, tempfile::TempDir) {
    let server = Server::start(archive.clone(), vec![], Plan::Serve);
    let data = tempfile::tempdir().unwrap();
    let err = download::ensure(&options(data.path(), &server.url, &archive)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::BadArchive { .. }), "{msg}");
    assert!(listing(data.path()).is_empty(), "no target, temporary folder or .part: {:?}", listing(data.path()));
    (msg, data)
}

/// A member header of `kind`, for `tar::Builder::append_data`.
fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

#[test]
fn an_archive_may_only_create_regular_files_and_folders() {
    use tar::EntryType;
    let src = common::synthetic_cifar(60, 20, 3);
    let elsewhere = tempfile::tempdir().unwrap();
    let passwd = elsewhere.path().join("passwd");
    fs::write(&passwd, "root:x:0:0\nalice:x:1000:1000\n").unwrap();

    // A link in place of batches.meta.txt (the case: /etc/passwd became the classes).
    let archive = common::http::cifar_archive_with(src.path(), &["batches.meta.txt"], |tar| {
        let mut h = header(EntryType::Symlink, 0);
        tar.append_link(&mut h, "cifar-10-batches-bin/batches.meta.txt", &passwd).unwrap();
    });
    let (msg, _data) = refused(archive);
    let want = format!("member \"cifar-10-batches-bin/batches.meta.txt\" is a symbolic link to {:?}", passwd);
    assert!(msg.contains(&want) && msg.contains("only create regular files and folders"), "{msg}");

    // The folder itself a link to another folder: refused at once, nothing written there.
    let archive = common::http::cifar_archive_with(src.path(), &[], |tar| {
        let mut h = header(EntryType::Symlink, 0);
        tar.append_link(&mut h, "cifar-10-batches-bin", elsewhere.path()).unwrap();
    });
    let (msg, _data) = refused(archive);
    assert!(msg.contains("member \"cifar-10-batches-bin\" is a symbolic link to"), "{msg}");
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 1, "only passwd");

    // A hard link (refused before, with no reason given).
    let archive = common::http::cifar_archive_with(src.path(), &["data_batch_5.bin"], |tar| {
        let mut h = header(EntryType::Link, 0);
        tar.append_link(&mut h, "cifar-10-batches-bin/data_batch_5.bin", "cifar-10-batches-bin/data_batch_1.bin").unwrap();
    });
    let (msg, _data) = refused(archive);
    assert!(msg.contains("\"cifar-10-batches-bin/data_batch_5.bin\" is a hard link to \"cifar-10-batches-bin/data_batch_1.bin\""), "{msg}");

    // Devices and a FIFO.
    for (kind, word) in [
        (EntryType::Char, "a character device"),
        (EntryType::Block, "a block device"),
        (EntryType::Fifo, "a FIFO"),
    ] {
        let archive = common::http::cifar_archive_with(src.path(), &["test_batch.bin"], |tar| {
            let mut h = header(kind, 0);
            h.set_device_major(1).unwrap();
            h.set_device_minor(5).unwrap(); // /dev/zero's numbers
            h.set_cksum();
            tar.append_data(&mut h, "cifar-10-batches-bin/test_batch.bin", std::io::empty()).unwrap();
        });
        let (msg, _data) = refused(archive);
        assert!(msg.contains(&format!("member \"cifar-10-batches-bin/test_batch.bin\" is {word}")), "{msg}");
    }

    // A regular file where the folder should be.
    let archive = common::http::cifar_archive_with(src.path(), &[], |tar| {
        tar.append_data(&mut header(EntryType::Regular, 3), "cifar-10-batches-bin", &b"abc"[..]).unwrap();
    });
    let (msg, _data) = refused(archive);
    assert!(msg.contains("member \"cifar-10-batches-bin\" is a regular file, expected a folder"), "{msg}");
}

#[test]
fn a_member_larger_than_it_may_be_is_refused_while_unpacking() {
    let src = common::synthetic_cifar(60, 20, 3);
    // A zero-filled batches.meta.txt one byte past the bound on a text file (16 MiB): 16 KB
    // compressed.
    let limit = tch_cifar10::safe_fs::MAX_TEXT_FILE_BYTES;
    let archive = common::http::cifar_archive_with(src.path(), &["batches.meta.txt"], |tar| {
        let mut h = header(tar::EntryType::Regular, limit + 1);
        tar.append_data(&mut h, "cifar-10-batches-bin/batches.meta.txt", std::io::repeat(0).take(limit + 1)).unwrap();
    });
    assert!(archive.len() < 1 << 20, "{}", archive.len());
    let (msg, _data) = refused(archive);
    let want = format!("member \"cifar-10-batches-bin/batches.meta.txt\" declares {} bytes, more than the {limit} bytes", limit + 1);
    assert!(msg.contains(&want), "{msg}");

    // A batch that declares 2.1 GB (the case) in an archive of a few KB, and a GNU
    // sparse batch of 2.1 GB holding one 512-byte block: refused before anything is written.
    let huge: u64 = 2_100_000_000;
    let truncated = common::http::cifar_archive_with(src.path(), &["data_batch_1.bin"], |tar| {
        let mut h = header(tar::EntryType::Regular, huge);
        h.set_path("cifar-10-batches-bin/data_batch_1.bin").unwrap();
        h.set_cksum();
        tar.get_mut().write_all(h.as_bytes()).unwrap(); // the header, and no data at all
    });
    let sparse = common::http::cifar_archive_with(src.path(), &["data_batch_1.bin"], |tar| {
        let mut h = header(tar::EntryType::GNUSparse, 512);
        h.set_path("cifar-10-batches-bin/data_batch_1.bin").unwrap();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.set_real_size(huge);
        gnu.sparse[0].set_offset(huge - 512);
        gnu.sparse[0].set_length(512);
        h.set_cksum();
        tar.get_mut().write_all(h.as_bytes()).unwrap();
        tar.get_mut().write_all(&[1u8; 512]).unwrap();
    });
    for archive in [truncated, sparse] {
        let t0 = std::time::Instant::now();
        let (msg, _data) = refused(archive);
        assert!(msg.contains(&format!("\"cifar-10-batches-bin/data_batch_1.bin\" declares {huge} bytes")), "{msg}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }
}

#[test]
fn a_part_file_that_is_a_link_is_never_followed() {
    let (_src, archive) = dataset_and_archive(&[]);
    let server = Server::start(archive.clone(), vec![], Plan::Serve);
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().join("precious.txt");
    fs::write(&outside, "do not append to me").unwrap();
    let part = data.path().join(format!("{}.part", download::ARCHIVE_NAME));
    std::os::unix::fs::symlink(&outside, &part).unwrap();

    let err = download::ensure(&options(data.path(), &server.url, &archive)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&part.display().to_string()) && msg.contains("a symbolic link"), "{msg}");
    assert_eq!(fs::read_to_string(&outside).unwrap(), "do not append to me");
    assert!(fs::symlink_metadata(&part).unwrap().file_type().is_symlink(), "the link is left for the user");
    assert_eq!(server.requests(), 0);

    // A folder in its place is refused the same way.
    fs::remove_file(&part).unwrap();
    fs::create_dir(&part).unwrap();
    let msg = download::ensure(&options(data.path(), &server.url, &archive)).unwrap_err().to_string();
    assert!(msg.contains(".part") && msg.contains("a directory"), "{msg}");
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_target_folder_that_is_a_link_is_left_alone() {
    let (_src, archive) = dataset_and_archive(&[]);
    let server = Server::start(archive.clone(), vec![], Plan::Serve);
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), data.path().join(cifar::SUBDIR)).unwrap();
    let msg = download::ensure(&options(data.path(), &server.url, &archive)).unwrap_err().to_string();
    assert!(msg.contains("is a symbolic link, not a folder") && msg.contains("move it away"), "{msg}");
    assert_eq!(server.requests(), 0);
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
}

#[test]
fn an_announced_size_past_the_bound_is_refused_before_the_body() {
    let (_src, archive) = dataset_and_archive(&[]);
    let data = tempfile::tempdir().unwrap();
    let part = data.path().join(format!("{}.part", download::ARCHIVE_NAME));

    // The official checksum: 10 TB announced (accepted before), refused at once.
    let server = Server::start(archive.clone(), vec![], Plan::Announce(10_000_000_000_000));
    let opts = DownloadOptions { url: server.url.clone(), attempts: 2, progress: false, ..DownloadOptions::new(data.path()) };
    let err = download::ensure(&opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Download { .. }), "{msg}");
    assert!(msg.contains("announces 10000000000000 bytes, more than the official archive's 170052171 bytes"), "{msg}");
    assert_eq!(server.requests(), 1, "not retried");
    assert!(listing(data.path()).is_empty());

    // The same on resuming a kept .part (206 with Content-Range): the .part cannot verify, so
    // it goes too.
    fs::write(&part, &archive[..100]).unwrap();
    let msg = download::ensure(&opts).unwrap_err().to_string();
    assert!(msg.contains("announces 10000000000000 bytes"), "{msg}");
    assert_eq!(server.ranges()[1], Some("bytes=100-".to_string()));
    assert!(listing(data.path()).is_empty());

    // A mirror's archive: --max-download-bytes. One byte short of the archive is refused...
    let honest = Server::start(archive.clone(), vec![], Plan::Serve);
    let n = archive.len() as u64;
    let opts = DownloadOptions { max_bytes: n - 1, ..options(data.path(), &honest.url, &archive) };
    let msg = download::ensure(&opts).unwrap_err().to_string();
    assert!(msg.contains(&format!("announces {n} bytes, more than the --max-download-bytes bound of {} bytes", n - 1)), "{msg}");
    // ...and exactly its size is enough.
    download::ensure(&DownloadOptions { max_bytes: n, ..opts }).unwrap();
}

#[test]
fn an_endless_body_stops_at_the_bound() {
    let (_src, archive) = dataset_and_archive(&[]);
    let server = Server::start(vec![], vec![], Plan::Endless);
    let data = tempfile::tempdir().unwrap();
    let opts = DownloadOptions { max_bytes: 1 << 20, ..options(data.path(), &server.url, &archive) };
    let t0 = std::time::Instant::now();
    let err = download::ensure(&opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Download { .. }), "{msg}");
    assert!(msg.contains("more than the --max-download-bytes bound of 1048576 bytes arrived: stopped there"), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(server.requests(), 1, "not retried");
    assert!(listing(data.path()).is_empty(), "the partial file is removed: {:?}", listing(data.path()));
}

#[test]
fn a_data_dir_that_is_a_file_is_named_once() {
    use std::process::Command;
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("x");
    fs::write(&file, "a file").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_tch-cifar10"))
        .args(["download", "--data-dir", file.to_str().unwrap(), "--url", "http://127.0.0.1:9/none"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let want = format!("error: download failed: invalid data-dir = {}: it is a file, expected a folder\n", file.display());
    assert!(err.ends_with(&want), "{err}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "a file");
}

/// A server that must not be asked: every request it gets is a failure of the test.
fn unused_server(archive: &[u8]) -> Server {
    Server::start(archive.to_vec(), vec![], Plan::Status(500))
}

#[test]
fn an_archive_in_the_data_folder_is_used_without_a_request_and_kept() {
    let (src, archive) = dataset_and_archive(&[]);
    let server = unused_server(&archive);
    let data = tempfile::tempdir().unwrap();
    let local = data.path().join(download::ARCHIVE_NAME);
    fs::write(&local, &archive).unwrap();
    let got = download::ensure(&options(data.path(), &server.url, &archive)).unwrap();
    assert_same_files(&got, &src.path().join(cifar::SUBDIR));
    assert_eq!(server.requests(), 0);
    assert_eq!(fs::read(&local).unwrap(), archive, "the user's archive stays as it was");
    assert_eq!(listing(data.path()), [cifar::SUBDIR, download::ARCHIVE_NAME]);
}

#[test]
fn archive_option_and_file_urls_are_verified_like_a_download() {
    let (src, archive) = dataset_and_archive(&[]);
    let server = unused_server(&archive);
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("my copy.tar.gz");
    fs::write(&file, &archive).unwrap();

    // --archive FILE.
    let data = tempfile::tempdir().unwrap();
    let opts = DownloadOptions { archive: Some(file.clone()), ..options(data.path(), &server.url, &archive) };
    let got = download::ensure(&opts).unwrap();
    assert_same_files(&got, &src.path().join(cifar::SUBDIR));

    // A file:// URL (with an escaped space).
    let data = tempfile::tempdir().unwrap();
    let url = format!("file://{}", file.display()).replace(' ', "%20");
    let got = download::ensure(&options(data.path(), &url, &archive)).unwrap();
    assert_same_files(&got, &src.path().join(cifar::SUBDIR));
    assert_eq!(server.requests(), 0);

    // A wrong checksum: an error naming the file and both digests; the archive is kept.
    let data = tempfile::tempdir().unwrap();
    let mut opts = DownloadOptions { archive: Some(file.clone()), ..options(data.path(), &server.url, &archive) };
    opts.checksum = Checksum::sha256(&"ab".repeat(32)).unwrap();
    let err = download::ensure(&opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Checksum { kept: true, .. }), "{msg}");
    assert!(msg.contains("my copy.tar.gz") && msg.contains(&"ab".repeat(32)) && msg.contains(&sha256_hex(&archive)), "{msg}");
    assert!(msg.contains("left as it is"), "{msg}");
    assert_eq!(fs::read(&file).unwrap(), archive);
    assert!(listing(data.path()).is_empty(), "nothing unpacked");

    // With the official checksum (no --sha256/--md5), a local archive must be one of the two
    // official releases: the error lists both MD5s.
    let data = tempfile::tempdir().unwrap();
    let opts = DownloadOptions { archive: Some(file.clone()), ..DownloadOptions::new(data.path()) };
    let msg = download::ensure(&opts).unwrap_err().to_string();
    assert!(msg.contains(download::CIFAR10_MD5) && msg.contains(download::CIFAR10_PYTHON_MD5) && msg.contains(&md5_hex(&archive)), "{msg}");

    // A missing archive is an error naming it.
    let data = tempfile::tempdir().unwrap();
    let opts = DownloadOptions { archive: Some(elsewhere.path().join("nope.tar.gz")), ..options(data.path(), &server.url, &archive) };
    let msg = download::ensure(&opts).unwrap_err().to_string();
    assert!(msg.contains("nope.tar.gz"), "{msg}");
}

#[test]
fn a_python_release_archive_unpacks_to_its_own_folder() {
    // The python layout's files, with placeholder contents (the download checks presence; the
    // reader checks the pickles, see tests/cifar_python.rs).
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let names = ["batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"];
    for name in names {
        let data = format!("pickle of {name}");
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("cifar-10-batches-py/{name}"), data.as_bytes()).unwrap();
    }
    let archive = tar.into_inner().unwrap().finish().unwrap();
    let data = tempfile::tempdir().unwrap();
    fs::write(data.path().join(download::PYTHON_ARCHIVE_NAME), &archive).unwrap();
    let server = unused_server(&archive);
    let got = download::ensure(&options(data.path(), &server.url, &archive)).unwrap();
    assert_eq!(got, data.path().join("cifar-10-batches-py"));
    assert_eq!(fs::read_to_string(got.join("test_batch")).unwrap(), "pickle of test_batch");
    // A second run finds it complete.
    assert_eq!(download::ensure(&options(data.path(), &server.url, &archive)).unwrap(), got);
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_trickling_download_stops_with_the_speed_rule_and_keeps_its_bytes() {
    let (_src, archive) = dataset_and_archive(&[]);
    let server = Server::start(archive.clone(), vec![], Plan::Trickle(Duration::from_millis(100)));
    let data = tempfile::tempdir().unwrap();
    let opts = DownloadOptions { speed_limit: 1000, speed_time: Duration::from_secs(1), ..options(data.path(), &server.url, &archive) };
    let t0 = std::time::Instant::now();
    let err = download::ensure(&opts).unwrap_err();
    let msg = err.to_string();
    assert!(t0.elapsed() < Duration::from_secs(4), "stopped after the speed window, not the whole body");
    assert!(matches!(err, Error::Download { .. }), "{msg}");
    assert!(msg.contains("too slow") && msg.contains("--speed-limit of 1000 bytes/s") && msg.contains("--speed-time 1 s"), "{msg}");
    assert!(msg.contains("next run resumes") && msg.contains("--archive FILE"), "{msg}");
    assert_eq!(server.requests(), 1, "a slow server is not retried");
    let part = data.path().join(format!("{}.part", download::ARCHIVE_NAME));
    let kept = fs::read(&part).unwrap();
    assert!(!kept.is_empty() && kept.len() < 100 && archive.starts_with(&kept), "{} bytes kept", kept.len());
}
