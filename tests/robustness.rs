//! `eval --corruptions` and `--fgsm`: each corruption gives fixed images for a fixed seed
//! (golden values) and the values a hand derivation gives where there is one; FGSM at epsilon 0
//! is the clean accuracy; bad names and epsilons are clear errors with nothing written.

mod common;

use std::process::Command;

use tch::{Kind, Tensor};
use tch_cifar10::eval::{corruptions, run_eval, EvalOptions};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Two 32x32 images, a fixed pattern of bytes.
fn images() -> Tensor {
    Tensor::arange(2 * 3 * 32 * 32, (Kind::Int64, tch::Device::Cpu)).multiply_scalar(37).remainder(251).to_kind(Kind::Uint8).view([2, 3, 32, 32])
}

fn bytes(t: &Tensor) -> Vec<u8> {
    Vec::<u8>::try_from(t.flatten(0, -1)).unwrap()
}

/// The golden values: the byte sum and the first four bytes of each corruption of [`images`]
/// at severity 3 with seed 7, from this implementation (libtorch's CPU generator); they change
/// only if a corruption changes.
#[test]
fn each_corruption_gives_fixed_images_for_a_seed() {
    let x = images();
    let clean: u64 = bytes(&x).iter().map(|&b| u64::from(b)).sum();
    let mut got = Vec::new();
    for name in corruptions::NAMES {
        let y = corruptions::corrupt(&x, name, 3, 7);
        assert_eq!(y.size(), [2, 3, 32, 32]);
        assert_eq!(bytes(&y), bytes(&corruptions::corrupt(&x, name, 3, 7)), "{name}: the same seed, the same images");
        let b = bytes(&y);
        got.push((name, b.iter().map(|&v| u64::from(v)).sum::<u64>(), [b[0], b[1], b[2], b[3]]));
    }
    assert_eq!(clean, 767686);
    let want: Vec<(&str, u64, [u8; 4])> = GOLDEN.to_vec();
    assert_eq!(got, want);
    // Another seed draws other noise.
    assert_ne!(bytes(&corruptions::corrupt(&x, "gaussian_noise", 3, 8)), bytes(&corruptions::corrupt(&x, "gaussian_noise", 3, 7)));
}

const GOLDEN: [(&str, u64, [u8; 4]); 8] = [
    ("gaussian_noise", 763396, [1, 37, 111, 138]),
    ("shot_noise", 764265, [0, 30, 91, 140]),
    ("impulse_noise", 767299, [0, 37, 74, 111]),
    ("gaussian_blur", 764806, [45, 64, 71, 97]),
    ("brightness", 938443, [0, 75, 112, 149]),
    ("contrast", 764386, [74, 89, 104, 119]),
    ("pixelate", 764607, [33, 58, 74, 99]),
    ("jpeg_compression", 765676, [45, 34, 85, 123]),
];

/// Values derived by hand: a flat grey image stays itself under blur, contrast and pixelate;
/// brightness lifts black to the grey c * 255 (0.15 * 255 = 38.25 -> 38 at severity 3).
#[test]
fn corruptions_of_flat_images_are_known() {
    let grey = Tensor::full([1, 3, 32, 32], 100, (Kind::Uint8, tch::Device::Cpu));
    for name in ["gaussian_blur", "contrast", "pixelate"] {
        for s in 1..=5 {
            let y = bytes(&corruptions::corrupt(&grey, name, s, 0));
            // 100 / 255 * 255 may round a hair under 100 and truncate to 99.
            assert!(y.iter().all(|&v| v == 100 || v == 99), "{name} {s}: {:?}", &y[..4]);
        }
    }
    let black = Tensor::zeros([1, 3, 32, 32], (Kind::Uint8, tch::Device::Cpu));
    assert!(bytes(&corruptions::corrupt(&black, "brightness", 3, 0)).iter().all(|&v| v == 38));
    // Brightness keeps hue: a pure red stays red, brighter.
    let red = Tensor::cat(&[Tensor::full([1, 1, 32, 32], 100, (Kind::Uint8, tch::Device::Cpu)), Tensor::zeros([1, 2, 32, 32], (Kind::Uint8, tch::Device::Cpu))], 1);
    let y = bytes(&corruptions::corrupt(&red, "brightness", 5, 0));
    assert_eq!((y[0], y[1024], y[2048]), (176, 0, 0)); // (100/255 + 0.3) * 255 = 176.5 -> 176
}

#[test]
fn fgsm_at_zero_is_clean_accuracy_and_bad_flags_write_nothing() -> TestResult {
    let data = common::synthetic_cifar(120, 40, 3);
    let out = tempfile::tempdir()?;
    let run = out.path().join("run");
    let bin = env!("CARGO_BIN_EXE_tch-cifar10");
    let o = Command::new(bin)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .args(["-q", "train", "--epochs", "1", "--batch-size", "10", "--device", "cpu", "--threads", "1", "--data-dir"])
        .arg(data.path())
        .arg("--out")
        .arg(&run)
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = run_eval(&EvalOptions { fgsm: Some("0,8".into()), corruptions: Some("contrast,pixelate".into()), ..EvalOptions::new(&run) })?;
    let fgsm = report.fgsm.as_ref().unwrap();
    assert_eq!((fgsm[0].epsilon, fgsm[0].accuracy), (0.0, report.accuracy));
    assert!(fgsm[1].accuracy <= report.accuracy);
    let rows = report.corruptions.as_ref().unwrap();
    assert_eq!(rows.iter().map(|r| (r.corruption.as_str(), r.accuracy.len())).collect::<Vec<_>>(), [("contrast", 5), ("pixelate", 5)]);
    let mean = rows.iter().flat_map(|r| &r.accuracy).sum::<f64>() / 10.0;
    assert!((report.mean_corruption_accuracy.unwrap() - mean).abs() < 1e-12);

    let png = out.path().join("robustness.png");
    let rel = out.path().join("reliability.png");
    for (flag, value, needle) in
        [("--fgsm", "-1", "invalid fgsm = -1"), ("--fgsm", "1,x", "invalid fgsm = x"), ("--corruptions", "fog", "invalid corruptions = fog")]
    {
        let o = Command::new(bin)
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .args(["eval", "--checkpoint"])
            .arg(&run)
            .args([flag, value, "--corruptions", "contrast", "--robustness-png"])
            .arg(&png)
            .arg("--reliability-png")
            .arg(&rel)
            .output()?;
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(if flag == "--corruptions" { 2 } else { 1 }), "{stderr}");
        if flag == "--fgsm" {
            assert!(stderr.contains(needle), "{stderr}");
        }
        assert!(!png.exists() && !rel.exists(), "nothing written");
    }
    let o = Command::new(bin)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .args(["eval", "--checkpoint"])
        .arg(&run)
        .args(["--corruptions", "contrast,fog"])
        .output()?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(1) && stderr.contains("invalid corruptions = fog") && stderr.contains("jpeg_compression"), "{stderr}");
    let o = Command::new(bin)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .args(["eval", "--checkpoint"])
        .arg(&run)
        .args(["--corruptions", "all", "--fgsm", "1", "--robustness-png"])
        .arg(&png)
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout)?;
    assert!(text.contains("Mean corruption accuracy") && text.contains("jpeg_compression") && text.contains("epsilon 1/255"), "{text}");
    assert!(png.is_file());
    Ok(())
}
