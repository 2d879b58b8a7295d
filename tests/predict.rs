//! `tch-cifar10 predict`: images are prepared exactly as training prepares CIFAR-10 records,
//! whatever their format, size and colour type, probabilities come from the softmax module, and
//! bad images (truncated, huge, not a regular file) are errors naming the file. Images are
//! written by the test from synthetic records.

mod common;

use std::path::{Path, PathBuf};

use image::{GrayImage, ImageBuffer, Rgb, RgbImage, Rgba, RgbaImage};
use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_cifar10::{
    checkpoint::save_model,
    config::Kernels,
    data::normalize,
    model::Net,
    predict::{load_image, run_predict, PredictOptions},
    softmax::softmax,
    DeviceSpec, Error,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A record's CHW pixels as an RGB image (HWC).
fn record_image(record: &[u8]) -> RgbImage {
    let px = &record[1..];
    ImageBuffer::from_fn(32, 32, |x, y| {
        let at = |c: usize| px[c * 1024 + y as usize * 32 + x as usize];
        Rgb([at(0), at(1), at(2)])
    })
}

/// A seeded 4-class model saved under `dir`.
fn model(dir: &Path) -> (PathBuf, nn::VarStore, Net) {
    let _rng = tch_cifar10::rng::lock_global_rng();
    tch::manual_seed(21);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), 4);
    net.init_pytorch();
    let path = dir.join("model.safetensors");
    save_model(&path, &net, &["cat", "dog", "bird", "fish"].map(String::from)).unwrap();
    (path, vs, net)
}

fn opts(checkpoint: &Path, images: Vec<PathBuf>, top_k: usize) -> PredictOptions {
    PredictOptions { checkpoint: checkpoint.to_path_buf(), images, top_k, device: DeviceSpec::Cpu, classes: None, kernels: Kernels::Reference, no_temperature: false, explain: None }
}

fn bytes(t: &Tensor) -> Vec<u8> {
    Vec::<u8>::try_from(t.flatten(0, -1)).unwrap()
}

/// Each record as `dir/img<i>.png`; their paths, in order.
fn save_records(dir: &Path, records: &[Vec<u8>]) -> Result<Vec<PathBuf>, image::ImageError> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let p = dir.join(format!("img{i}.png"));
            record_image(r).save(&p).map(|()| p)
        })
        .collect()
}

#[test]
fn probabilities_are_the_softmax_of_the_normalised_record() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (ckpt, _vs, net) = model(dir.path());
    let records = common::learnable_records(3, 4, 5);
    let paths = save_records(dir.path(), &records)?;
    let preds = run_predict(&opts(&ckpt, paths.clone(), 4))?;
    // The records' bytes, laid out as the CIFAR-10 reader lays them out, in one batch as predict
    // runs them: [3, 3, 32, 32] (a batch of one may take other kernels, with other roundings).
    let batch: Vec<u8> = records.iter().flat_map(|r| r[1..].to_vec()).collect();
    let xs = Tensor::from_slice(&batch).view([3, 3, 32, 32]);
    let probs = softmax(&net.forward(&normalize(&xs)));
    for (i, (pred, path)) in preds.iter().zip(&paths).enumerate() {
        assert_eq!(&pred.path, path);
        let want = Vec::<f32>::try_from(probs.get(i as i64))?;
        assert_eq!(pred.top.len(), 4);
        let mut total = 0.0;
        for (j, c) in pred.top.iter().enumerate() {
            assert_eq!(c.probability, f64::from(want[c.index]), "bit-exact with the training path");
            assert_eq!(c.class, ["cat", "dog", "bird", "fish"][c.index]);
            if j > 0 {
                assert!(pred.top[j - 1].probability >= c.probability, "sorted");
            }
            total += c.probability;
        }
        assert!((total - 1.0).abs() < 1e-6);
    }
    // top-k beyond the class count is the class count; top-1 is the argmax.
    let preds = run_predict(&opts(&ckpt, paths[..1].to_vec(), 1))?;
    assert_eq!(preds[0].top.len(), 1);
    let all = run_predict(&opts(&ckpt, paths[..1].to_vec(), 99))?;
    assert_eq!(all[0].top.len(), 4);
    assert_eq!(all[0].top[0], preds[0].top[0]);
    Ok(())
}

#[test]
fn grey_rgba_large_and_jpeg_images_become_32x32_rgb() -> TestResult {
    let dir = tempfile::tempdir()?;
    let record = &common::learnable_records(1, 4, 6)[0];
    let rgb = record_image(record);

    // Greyscale: the grey value in all three channels.
    let grey = GrayImage::from_fn(32, 32, |x, y| image::Luma([(x * 8 + y) as u8]));
    let p = dir.path().join("grey.png");
    grey.save(&p)?;
    let t = load_image(&p)?;
    assert_eq!(t.size(), [3, 32, 32]);
    for c in 0..3 {
        assert_eq!(bytes(&t.get(c)), grey.as_raw().clone(), "channel {c}");
    }

    // RGBA: alpha dropped, colours kept exactly.
    let rgba = RgbaImage::from_fn(32, 32, |x, y| {
        let Rgb([r, g, b]) = *rgb.get_pixel(x, y);
        Rgba([r, g, b, (x * 7) as u8])
    });
    let p = dir.path().join("rgba.png");
    rgba.save(&p)?;
    assert_eq!(bytes(&load_image(&p)?), record[1..].to_vec());

    // Larger and non-square: resized to 32x32; a solid colour stays exactly that colour.
    let p = dir.path().join("big.png");
    RgbImage::from_pixel(200, 75, Rgb([10, 128, 250])).save(&p)?;
    let t = load_image(&p)?;
    assert_eq!(t.size(), [3, 32, 32]);
    for (c, v) in [10u8, 128, 250].iter().enumerate() {
        assert!(bytes(&t.get(c as i64)).iter().all(|b| b == v), "channel {c}");
    }
    // Smaller: upscaled to 32x32.
    let p = dir.path().join("small.png");
    RgbImage::from_pixel(8, 8, Rgb([1, 2, 3])).save(&p)?;
    assert_eq!(load_image(&p)?.size(), [3, 32, 32]);

    // JPEG (lossy): close to the original, and found by content whatever the extension says.
    let p = dir.path().join("photo.png.jpg");
    RgbImage::from_pixel(40, 40, Rgb([200, 30, 90])).save_with_format(&p, image::ImageFormat::Jpeg)?;
    let t = load_image(&p)?;
    let mean = t.to_kind(Kind::Float).mean_dim(&[1i64, 2][..], false, Kind::Float);
    let got = Vec::<f32>::try_from(mean)?;
    for (g, w) in got.iter().zip([200.0, 30.0, 90.0]) {
        assert!((g - w).abs() < 4.0, "{got:?}");
    }
    Ok(())
}

#[test]
fn bad_images_are_errors_naming_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (ckpt, _vs, _net) = model(dir.path());
    let good = dir.path().join("good.png");
    RgbImage::from_pixel(32, 32, Rgb([1, 2, 3])).save(&good)?;
    let full = std::fs::read(&good)?;

    let cases: [(&str, &[u8], &str); 4] = [
        ("text.png", b"hello, not an image\n", "not an image file"),
        ("cut.png", &full[..full.len() / 2], "truncated"),
        ("anim.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "Gif images are not supported"),
        ("empty.jpg", b"", "not an image file"),
    ];
    for (name, content, want) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, content)?;
        let err = run_predict(&opts(&ckpt, vec![good.clone(), p.clone()], 3)).unwrap_err();
        assert!(matches!(err, Error::BadImage { .. }), "{name}: {err:?}");
        let text = err.to_string();
        assert!(text.contains(&p.display().to_string()) && text.contains(want), "{name}: {text}");
    }
    let absent = dir.path().join("absent.png");
    let err = run_predict(&opts(&ckpt, vec![absent], 3)).unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("absent.png"), "{err}");
    Ok(())
}

#[test]
fn cli_prints_text_and_json() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (ckpt, _vs, _net) = model(dir.path());
    let img = dir.path().join("x.png");
    record_image(&common::learnable_records(1, 4, 7)[0]).save(&img)?;
    let bin = env!("CARGO_BIN_EXE_tch-cifar10");
    let out = std::process::Command::new(bin).arg("predict").arg("--checkpoint").arg(&ckpt).arg(&img).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout)?;
    assert!(text.starts_with(&format!("{}\n", img.display())) && text.lines().count() == 4, "{text}");
    assert!(text.contains(" %"), "{text}");

    let out = std::process::Command::new(bin)
        .args(["predict", "--json", "--top-k", "2", "--checkpoint"])
        .arg(dir.path()) // a run directory holding model.safetensors
        .arg(&img)
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json[0]["path"], img.display().to_string());
    assert_eq!(json[0]["top"].as_array().unwrap().len(), 2);
    assert!(json[0]["top"][0]["probability"].as_f64().unwrap() > 0.0);
    Ok(())
}

/// A 40x30 image with a different colour at every pixel.
fn pattern() -> RgbImage {
    RgbImage::from_fn(40, 30, |x, y| Rgb([(x * 6) as u8, (y * 8) as u8, ((x * y) % 251) as u8]))
}

#[test]
fn every_imagefolder_format_decodes_and_any_truncation_is_an_error_naming_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let img = pattern();
    let want = load_image(&{
        let p = dir.path().join("want.png");
        img.save(&p)?;
        p
    })?;
    for (ext, full) in common::images::every_format(&img) {
        let p = dir.path().join(format!("full.{ext}"));
        std::fs::write(&p, &full)?;
        let t = load_image(&p)?;
        assert_eq!(t.size(), [3, 32, 32], "{ext}");
        if !["jpg", "jpeg", "pgm"].contains(&ext) {
            assert_eq!(bytes(&t), bytes(&want), "{ext} is lossless");
        }
        // Cut anywhere after the signature, down to the last byte: never an image. (The JPEG
        // decoder alone fills a cut JPEG with grey, and the WebP decoder accepts some cuts.)
        let n = full.len();
        let mut cuts: Vec<usize> = (1..8).map(|k| n * k / 8).collect();
        cuts.extend([n - 12, n - 2, n - 1]);
        for cut in cuts {
            let p = dir.path().join(format!("cut-{cut}.{ext}"));
            std::fs::write(&p, &full[..cut])?;
            let err = load_image(&p).unwrap_err();
            assert!(matches!(&err, Error::BadImage { path, .. } if *path == p), "{ext} cut at {cut}/{n}: {err}");
            let text = err.to_string();
            assert!(text.contains("truncated") || text.contains("cannot decode"), "{ext} cut at {cut}/{n}: {text}");
            if ["jpg", "png", "webp"].contains(&ext) && cut >= n / 8 {
                assert!(text.contains("truncated"), "{ext} cut at {cut}/{n}: {text}");
            }
        }
    }
    Ok(())
}

#[test]
fn sixteen_bit_images_are_scaled_and_exif_orientation_is_ignored() -> TestResult {
    let dir = tempfile::tempdir()?;
    // 16-bit greyscale and RGB: v / 257, rounded (PIL would clip the grey ones to 255).
    let values: [u16; 4] = [0, 384, 10_240, 65_535];
    let want = [0u8, 1, 40, 255];
    let grey = ImageBuffer::<image::Luma<u16>, _>::from_fn(32, 32, |x, _| image::Luma([values[x as usize % 4]]));
    let p = dir.path().join("grey16.png");
    grey.save(&p)?;
    let t = load_image(&p)?;
    let rgb16 = ImageBuffer::<Rgb<u16>, _>::from_fn(32, 32, |x, _| Rgb([values[x as usize % 4]; 3]));
    let p16 = dir.path().join("rgb16.png");
    rgb16.save(&p16)?;
    for t in [t, load_image(&p16)?] {
        for c in 0..3 {
            assert_eq!(bytes(&t.get(c).get(0))[..4], want, "channel {c}");
        }
    }

    // A 40x20 JPEG, red on the left, blue on the right, tagged "rotate 90 degrees clockwise"
    // (EXIF Orientation 6): the pixels are used as stored, as PIL's convert("RGB") uses them.
    let img = RgbImage::from_fn(40, 20, |x, _| if x < 20 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
    // A big-endian TIFF header and one IFD entry: tag 0x0112 (Orientation), SHORT, 1, value 6.
    let exif = [b"MM\x00\x2a\x00\x00\x00\x08\x00\x01".as_slice(), &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]].concat();
    let mut jpeg = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
    image::ImageEncoder::set_exif_metadata(&mut enc, exif).map_err(|e| e.to_string())?;
    enc.encode_image(&img)?;
    let p = dir.path().join("rotated.jpg");
    std::fs::write(&p, &jpeg)?;
    let mut dec = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&jpeg))?;
    assert_eq!(image::ImageDecoder::orientation(&mut dec)?, image::metadata::Orientation::Rotate90, "the file carries the tag");
    let t = load_image(&p)?;
    let (left, right) = (bytes(&t.get(0).get(16))[2], bytes(&t.get(0).get(16))[29]);
    assert!(left > 200 && right < 50, "red stays on the left: {left}, {right}");
    Ok(())
}

#[test]
fn huge_dimensions_are_refused_from_the_header_naming_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (ckpt, _vs, _net) = model(dir.path());
    // 20,000,000 x 1: a small file whose resize alone would need 10 GB (20,000,000 x 32 x 16).
    let wide = dir.path().join("wide.png");
    common::images::write_black_png(&wide, 20_000_000, 1);
    assert!(std::fs::metadata(&wide)?.len() < 100_000);
    // 10,000 x 10,000: within the side bound, over the pixel bound.
    let many = dir.path().join("many.png");
    common::images::write_black_png(&many, 10_000, 10_000);
    for (p, want) in [(&wide, ["20000000 x 1 pixels", "65535"]), (&many, ["10000 x 10000 pixels", "89478485"])] {
        let started = std::time::Instant::now();
        let err = run_predict(&opts(&ckpt, vec![p.clone()], 1)).unwrap_err();
        assert!(matches!(&err, Error::BadImage { path, .. } if path == p), "{err}");
        let text = err.to_string();
        assert!(want.iter().all(|w| text.contains(w)), "{text}");
        // Refused from the header: nothing decoded (a decode of `many` alone takes seconds).
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }

    // The binary: an error naming the file and its dimensions, and little memory (its peak
    // resident size; a decode and resize would need gigabytes).
    let bin = env!("CARGO_BIN_EXE_tch-cifar10");
    let out = std::process::Command::new(bin).arg("predict").arg("--checkpoint").arg(&ckpt).arg(&wide).output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wide.png") && stderr.contains("20000000 x 1 pixels"), "{stderr}");
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    // ru_maxrss is in KiB: the largest child so far (any predict run of this file's tests).
    assert!(usage.ru_maxrss < 2 << 20, "peak resident size {} KiB", usage.ru_maxrss);
    Ok(())
}

#[test]
fn only_regular_files_are_read() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (ckpt, _vs, _net) = model(dir.path());
    let zero = dir.path().join("x.png");
    std::os::unix::fs::symlink("/dev/zero", &zero)?;
    let fifo = dir.path().join("fifo.jpg");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status()?.success());
    // (A folder is not refused: it stands for its images, see below.)
    for (p, kind) in [(&zero, "a device"), (&fifo, "a FIFO")] {
        let err = run_predict(&opts(&ckpt, vec![p.clone()], 1)).unwrap_err();
        assert!(matches!(&err, Error::Io { path, .. } if path == p), "{err}");
        assert!(err.to_string().contains(kind), "{err}");
    }
    Ok(())
}

/// A folder given to `predict` stands for the images under it, recursively, in sorted order;
/// other files are skipped, and a folder without images is an error naming it.
#[test]
fn a_folder_is_its_images_recursively_in_sorted_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (ckpt, _vs, _net) = model(dir.path());
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(photos.join("b/deeper"))?;
    std::fs::create_dir_all(photos.join(".hidden"))?;
    let img = |p: &Path, v: u8| RgbImage::from_pixel(32, 32, Rgb([v, 2 * v, 3 * v])).save(p);
    img(&photos.join("z.png"), 1)?;
    img(&photos.join("a.PNG"), 2)?;
    img(&photos.join("b/deeper/c.bmp"), 3)?;
    img(&photos.join(".hidden/x.png"), 4)?;
    std::fs::write(photos.join("notes.txt"), "not an image")?;
    let got = run_predict(&opts(&ckpt, vec![photos.clone()], 2))?;
    let paths: Vec<_> = got.iter().map(|p| p.path.strip_prefix(&photos).unwrap().to_path_buf()).collect();
    // sorted(os.walk(photos)): the top folder's files, then b/deeper's.
    assert_eq!(paths, [PathBuf::from("a.PNG"), PathBuf::from("z.png"), PathBuf::from("b/deeper/c.bmp")]);
    // The same predictions as the files given one by one.
    let one_by_one = run_predict(&opts(&ckpt, vec![photos.join("a.PNG"), photos.join("z.png"), photos.join("b/deeper/c.bmp")], 2))?;
    assert_eq!(got, one_by_one);

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty)?;
    std::fs::write(empty.join("readme.txt"), "x")?;
    let err = run_predict(&opts(&ckpt, vec![empty.clone()], 2)).unwrap_err().to_string();
    assert!(err.contains(&empty.display().to_string()) && err.contains("holds no image"), "{err}");
    Ok(())
}

#[test]
fn fast_kernels_predict_as_libtorch_within_rounding() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (ckpt, _vs, _net) = model(dir.path());
    // 11 images: a full chunk of 8 and a ragged one.
    let paths = save_records(dir.path(), &common::learnable_records(11, 4, 9))?;
    let want = run_predict(&opts(&ckpt, paths.clone(), 4))?;
    let got = run_predict(&PredictOptions { kernels: Kernels::Fast, ..opts(&ckpt, paths.clone(), 4) })?;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.path, w.path);
        assert_eq!(g.top[0].index, w.top[0].index, "{}", g.path.display());
        for c in &g.top {
            let p = w.top.iter().find(|x| x.index == c.index).unwrap().probability;
            assert!((c.probability - p).abs() < 1e-5, "{}: class {} {} against {p}", g.path.display(), c.index, c.probability);
        }
    }
    // The flag, and a value it does not take.
    let bin = env!("CARGO_BIN_EXE_tch-cifar10");
    let out = std::process::Command::new(bin).args(["predict", "--json", "--kernels", "fast", "--checkpoint"]).arg(&ckpt).arg(&paths[0]).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json[0]["top"][0]["index"], want[0].top[0].index);
    let out = std::process::Command::new(bin).args(["predict", "--kernels", "turbo", "--checkpoint"]).arg(&ckpt).arg(&paths[0]).output()?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("turbo") && err.contains("reference") && err.contains("fast"), "{err}");
    Ok(())
}

/// `--explain`: one row per image, the image upscaled 8 times beside its saliency over it in
/// grey and red; the predictions are the same as without it.
#[test]
fn explain_draws_each_image_beside_its_saliency() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (ckpt, _vs, _net) = model(dir.path());
    let records = common::learnable_records(2, 4, 6);
    let paths = save_records(dir.path(), &records)?;
    let png = dir.path().join("explain.png");
    let plain = run_predict(&opts(&ckpt, paths.clone(), 2))?;
    let explained = run_predict(&PredictOptions { explain: Some(png.clone()), ..opts(&ckpt, paths, 2) })?;
    assert_eq!(plain, explained);
    let img = image::open(&png)?.to_rgb8();
    // Two panels of 256 pixels and three gaps of 8 across; two rows of 256 and three gaps down.
    assert_eq!(img.dimensions(), (2 * 256 + 3 * 8, 2 * 256 + 3 * 8));
    // The left panel is the image itself: its top-left 8x8 block is the record's first pixel.
    let first = record_image(&records[0]).get_pixel(0, 0).0;
    assert_eq!((img.get_pixel(8, 8).0, img.get_pixel(15, 15).0), (first, first));
    Ok(())
}
