//! Chunks nobody uses are never inflated: a small PNG whose colour profile (`iCCP`) or text
//! (`zTXt`, `iTXt`) inflates to hundreds of megabytes is read as the 32x32 image it holds,
//! with the memory of one (the profile is thrown away in any case: PIL's `convert("RGB")`, which
//! torchvision's loader calls, does not apply it either). Measured on the child process that
//! reads it (`wait4`'s peak resident size), so other tests running beside do not count.

use std::{path::Path, process::Command};

/// A PNG chunk: length, type, data, CRC-32 of type and data.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let mut digest = crc.digest();
    digest.update(kind);
    digest.update(data);
    [&(data.len() as u32).to_be_bytes()[..], kind, data, &digest.finalize().to_be_bytes()].concat()
}

/// zlib of `mib` MiB of zero bytes, made fast: one MiB deflated with a sync flush (whole,
/// byte-aligned, non-final blocks) repeated, an empty final block, and the Adler-32 of `n` zeros
/// (a = 1, b = n mod 65521).
fn zeros_zlib(mib: usize) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut piece = Vec::with_capacity(1 << 16);
    c.compress_vec(&vec![0u8; 1 << 20], &mut piece, flate2::FlushCompress::Sync).unwrap();
    let n = (mib as u64) << 20;
    let adler = ((n % 65521) as u32) << 16 | 1;
    [vec![0x78, 0xda], piece.repeat(mib), vec![0x03, 0x00], adler.to_be_bytes().to_vec()].concat()
}

#[test]
fn the_zlib_of_zeros_inflates_to_zeros() {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&zeros_zlib(3)[..]), &mut out).unwrap();
    assert_eq!(out, vec![0u8; 3 << 20]);
}

/// A 32x32 PNG with `extra` chunks inserted after its header.
fn png_with(extra: &[Vec<u8>]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 77]));
    let mut plain = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut plain), image::ImageFormat::Png).unwrap();
    let ihdr_end = 8 + 12 + 13;
    [plain[..ihdr_end].to_vec(), extra.concat(), plain[ihdr_end..].to_vec()].concat()
}

/// Runs the binary; returns (exit status, stdout, peak resident KiB of that process).
fn run_measured(args: &[&std::ffi::OsStr]) -> (i32, String, i64) {
    let child = Command::new(env!("CARGO_BIN_EXE_tch-cifar10")).args(args).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.unwrap(), &mut stdout).unwrap();
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: waits for our own child, writing into the two locals.
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    (libc::WEXITSTATUS(status), stdout, usage.ru_maxrss)
}

#[test]
fn unused_compressed_chunks_are_not_inflated() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.png");
    std::fs::write(&plain, png_with(&[])).unwrap();
    let bomb = zeros_zlib(384);
    let iccp = chunk(b"iCCP", &[b"icc\0\0".as_ref(), &bomb].concat());
    let ztxt = chunk(b"zTXt", &[b"Comment\0\0".as_ref(), &bomb].concat());
    let itxt = chunk(b"iTXt", &[b"Comment\0\x01\0\0\0".as_ref(), &bomb].concat());
    let model = model(dir.path());
    let (_, _, base) = run_measured(&["predict".as_ref(), "--checkpoint".as_ref(), model.as_os_str(), plain.as_os_str()]);
    for (name, extra) in [("iccp", iccp), ("ztxt", ztxt), ("itxt", itxt)] {
        let path = dir.path().join(format!("{name}.png"));
        std::fs::write(&path, png_with(&[extra])).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < 2 << 20, "a small file");
        let (status, stdout, peak) = run_measured(&["predict".as_ref(), "--checkpoint".as_ref(), model.as_os_str(), path.as_os_str()]);
        assert_eq!(status, 0, "{name}");
        assert!(stdout.contains(&format!("{name}.png")), "{stdout}");
        // The profile or text would be 384 MiB inflated; allow 128 MiB above the plain image.
        assert!(peak < base + (128 << 10), "{name}: {peak} KiB at peak, {base} KiB for the plain image");
    }
}

fn model(dir: &Path) -> std::path::PathBuf {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = tch_cifar10::model::Net::new(&vs.root(), 10);
    let path = dir.join("m.safetensors");
    tch_cifar10::checkpoint::save_model(&path, &net, &(0..10).map(|i| format!("c{i}")).collect::<Vec<_>>()).unwrap();
    path
}
