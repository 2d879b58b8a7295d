//! Common corruptions computed on the fly from the test images: the CIFAR-10-C families of
//! Hendrycks and Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
//! Perturbations" (ICLR 2019), with the severity parameters of their `make_cifar_c.py`, and the
//! fast gradient sign method (Goodfellow, Shlens and Szegedy, ICLR 2015).
//!
//! Each corruption maps `uint8 [N, 3, 32, 32]` images to corrupted `uint8` images, as
//! `make_cifar_c.py` stores them (`np.uint8(corruption(x, severity))`: values in `[0, 255]`,
//! truncated). Pixel values `x` below are in `[0, 1]`, `c` the severity's parameter:
//!
//! | name | formula | c at severity 1..5 |
//! |---|---|---|
//! | `gaussian_noise` | `clip(x + N(0, c^2))` | 0.04 0.06 0.08 0.09 0.10 |
//! | `shot_noise` | `clip(Poisson(x c) / c)` | 500 250 100 75 50 |
//! | `impulse_noise` | salt and pepper on a fraction `c` of the values (half 0, half 1), as `skimage.util.random_noise(mode="s&p")` | .01 .02 .03 .05 .07 |
//! | `gaussian_blur` | Gaussian filter of standard deviation `c` pixels, truncated at 4 sigma, edges repeated (`skimage.filters.gaussian`) | .4 .6 .7 .8 1 |
//! | `brightness` | HSV value `v -> min(v + c, 1)`, hue and saturation kept | .05 .1 .15 .2 .3 |
//! | `contrast` | `clip((x - m) c + m)`, `m` the image's mean per channel | .75 .5 .4 .3 .15 |
//! | `pixelate` | box-filter resize to `int(32 c)` pixels a side and back (PIL's `BOX`) | .95 .9 .85 .75 .65 |
//! | `jpeg_compression` | JPEG at quality `c`, decoded (the `image` crate's encoder, not PIL's) | 80 65 58 50 40 |
//!
//! The noises draw from libtorch's global generator seeded with the seed given, the same draws
//! for the same seed, images and severity.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// The corruption families, by their `make_cifar_c.py` names.
pub const NAMES: [&str; 8] =
    ["gaussian_noise", "shot_noise", "impulse_noise", "gaussian_blur", "brightness", "contrast", "pixelate", "jpeg_compression"];

/// Severities 1 to 5.
pub const SEVERITIES: usize = 5;

/// The parameter `c` of `name` at `severity` (1..=5), as in `make_cifar_c.py`.
fn parameter(name: &str, severity: usize) -> f64 {
    let table: [f64; 5] = match name {
        "gaussian_noise" => [0.04, 0.06, 0.08, 0.09, 0.10],
        "shot_noise" => [500.0, 250.0, 100.0, 75.0, 50.0],
        "impulse_noise" => [0.01, 0.02, 0.03, 0.05, 0.07],
        "gaussian_blur" => [0.4, 0.6, 0.7, 0.8, 1.0],
        "brightness" => [0.05, 0.1, 0.15, 0.2, 0.3],
        "contrast" => [0.75, 0.5, 0.4, 0.3, 0.15],
        "pixelate" => [0.95, 0.9, 0.85, 0.75, 0.65],
        "jpeg_compression" => [80.0, 65.0, 58.0, 50.0, 40.0],
        _ => unreachable!("names are checked by parse_names"),
    };
    table[severity - 1]
}

/// The corruptions named in `text` (comma-separated, or `all`).
///
/// # Errors
/// [`Error::InvalidConfig`] for `corruptions`, naming an unknown name and listing the known ones.
pub fn parse_names(text: &str) -> Result<Vec<&'static str>> {
    if text.trim() == "all" {
        return Ok(NAMES.to_vec());
    }
    text.split(',')
        .map(|n| {
            let n = n.trim();
            NAMES.iter().copied().find(|&k| k == n).ok_or_else(|| Error::InvalidConfig {
                field: "corruptions",
                value: n.to_string(),
                expected: format!("all, or corruption names among {}", NAMES.join(", ")),
            })
        })
        .collect()
}

/// `--fgsm EPS,...`: epsilons in units of 1/255 of the pixel range.
///
/// # Errors
/// [`Error::InvalidConfig`] for `fgsm`, naming a value that is not a finite number of 0 or more.
pub fn parse_epsilons(text: &str) -> Result<Vec<f64>> {
    text.split(',')
        .map(|e| match e.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(Error::InvalidConfig {
                field: "fgsm",
                value: e.trim().to_string(),
                expected: "epsilons in units of 1/255, comma-separated numbers of 0 or more (for example 1,4)".into(),
            }),
        })
        .collect()
}

/// `images` (`uint8 [N, 3, 32, 32]`, CPU) corrupted by `name` at `severity` (1..=5), seeded
/// with `seed` (see the module doc).
pub fn corrupt(images: &Tensor, name: &str, severity: usize, seed: i64) -> Tensor {
    let c = parameter(name, severity);
    let x = images.to_device(Device::Cpu).to_kind(Kind::Double) / 255.0;
    let y = tch::no_grad(|| {
        let _lock = crate::rng::lock_global_rng();
        tch::manual_seed(seed);
        match name {
            "gaussian_noise" => x.randn_like() * c + &x,
            "shot_noise" => (&x * c).poisson() / c,
            "impulse_noise" => {
                let hit = x.rand_like().lt(c);
                let salt = x.rand_like().lt(0.5).to_kind(Kind::Double);
                x.where_self(&hit.logical_not(), &salt)
            }
            "gaussian_blur" => gaussian_blur(&x, c),
            "brightness" => {
                let v = x.amax([1], true);
                let scale = (&v + c).clamp_max(1.0) / v.clamp_min(f64::MIN_POSITIVE);
                // v = 0 (black): no hue or saturation, the new grey is c.
                (&x * &scale).where_self(&v.gt(0.0), &(x.zeros_like() + c))
            }
            "contrast" => {
                let m = x.mean_dim(&[2i64, 3][..], true, Kind::Double);
                (&x - &m) * c + &m
            }
            "pixelate" => {
                let side = (32.0 * c) as i64;
                box_resize(&box_resize(&x, side), 32)
            }
            "jpeg_compression" => jpeg(images, c as u8),
            _ => unreachable!("names are checked by parse_names"),
        }
    });
    (y.clamp(0.0, 1.0) * 255.0).to_kind(Kind::Uint8) // np.uint8: truncation
}

/// A separable Gaussian filter (`skimage.filters.gaussian`: radius `int(4 sigma + 0.5)`, edges
/// repeated) over the last two dimensions of `x` (`[N, C, H, W]`, float64).
fn gaussian_blur(x: &Tensor, sigma: f64) -> Tensor {
    let r = (4.0 * sigma + 0.5) as i64;
    let w: Vec<f64> = (-r..=r).map(|i| (-0.5 * (i as f64 / sigma).powi(2)).exp()).collect();
    let sum: f64 = w.iter().sum();
    let w = Tensor::from_slice(&w.iter().map(|v| v / sum).collect::<Vec<_>>());
    let (n, ch, h, wd) = x.size4().expect("[N, C, H, W] images");
    let flat = x.reshape([n * ch, 1, h, wd]).replication_pad2d([r, r, r, r]);
    let kx = w.view([1, 1, 1, 2 * r + 1]);
    let ky = w.view([1, 1, 2 * r + 1, 1]);
    flat.conv2d(&kx, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1).conv2d(&ky, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1).reshape([n, ch, h, wd])
}

/// Resizes the last two dimensions of `x` (`[N, C, S, S]`) to `side` with PIL's `BOX` filter:
/// each output pixel the area-weighted mean of the input pixels its footprint covers.
fn box_resize(x: &Tensor, side: i64) -> Tensor {
    let s = x.size()[3];
    let scale = s as f64 / side as f64;
    let mut m = vec![0f64; (side * s) as usize];
    for o in 0..side {
        let (lo, hi) = (o as f64 * scale, (o + 1) as f64 * scale);
        for i in 0..s {
            let overlap = (hi.min((i + 1) as f64) - lo.max(i as f64)).max(0.0);
            m[(o * s + i) as usize] = overlap / scale;
        }
    }
    let m = Tensor::from_slice(&m).view([side, s]);
    m.matmul(x).matmul(&m.tr())
}

/// JPEG at `quality`, decoded, per image, as float64 in `[0, 1]`.
fn jpeg(images: &Tensor, quality: u8) -> Tensor {
    let images = images.to_device(Device::Cpu).contiguous();
    let n = images.size()[0];
    let out: Vec<Tensor> = (0..n)
        .map(|i| {
            let hwc = images.get(i).permute([1, 2, 0]).contiguous();
            let bytes = Vec::<u8>::try_from(hwc.flatten(0, -1)).expect("uint8 images");
            let mut buf = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
                .encode(&bytes, 32, 32, image::ExtendedColorType::Rgb8)
                .expect("a 32x32 RGB image encodes");
            let back = image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg).expect("our own JPEG decodes").to_rgb8();
            Tensor::from_slice(back.as_raw()).view([32, 32, 3]).permute([2, 0, 1])
        })
        .collect();
    Tensor::stack(&out, 0).to_kind(Kind::Double) / 255.0
}

/// Accuracy under FGSM with `epsilon` (in `[0, 1]` pixel units): each image moved by
/// `epsilon * sign(grad_x loss)` and clipped to `[0, 1]`, then normalised as in training.
/// `forward` maps normalised `float32 [B, 3, 32, 32]` to logits.
pub fn fgsm_accuracy(forward: &dyn Fn(&Tensor) -> Tensor, images: &Tensor, labels: &Tensor, epsilon: f64, batch_size: usize) -> f64 {
    let mut right = 0i64;
    for (xs, ys) in images.split(batch_size as i64, 0).iter().zip(labels.split(batch_size as i64, 0)) {
        let x = (xs.to_kind(Kind::Float) / 255.0).detach().set_requires_grad(true);
        let loss = forward(&((&x - 0.5) / 0.5)).cross_entropy_for_logits(&ys);
        let grad = Tensor::run_backward(&[loss], &[&x], false, false).remove(0);
        let adv = tch::no_grad(|| (x.detach() + grad.sign() * epsilon).clamp(0.0, 1.0));
        let logits = tch::no_grad(|| forward(&((adv - 0.5) / 0.5)));
        right += logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Int64).int64_value(&[]);
    }
    right as f64 / labels.size()[0].max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_epsilons_are_checked() {
        assert_eq!(parse_names("all").unwrap().len(), 8);
        assert_eq!(parse_names("contrast, pixelate").unwrap(), ["contrast", "pixelate"]);
        let err = parse_names("contrast,fog").unwrap_err().to_string();
        assert!(err.contains("fog") && err.contains("gaussian_noise"), "{err}");
        assert_eq!(parse_epsilons("0,1,4.5").unwrap(), [0.0, 1.0, 4.5]);
        for bad in ["-1", "x", "1,,2", "nan", "inf"] {
            assert!(parse_epsilons(bad).unwrap_err().to_string().contains("fgsm"), "{bad}");
        }
    }

    #[test]
    fn box_resize_averages_areas() {
        // 4 -> 2: pairs averaged; 2 -> 4: each value repeated.
        let x = Tensor::from_slice(&[0f64, 2.0, 4.0, 6.0]).view([1, 1, 1, 4]).expand([1, 1, 4, 4], false).contiguous();
        let y = box_resize(&x, 2);
        assert_eq!(Vec::<f64>::try_from(y.flatten(0, -1)).unwrap(), [1.0, 5.0, 1.0, 5.0]);
        let z = box_resize(&y, 4);
        assert_eq!(Vec::<f64>::try_from(z.get(0).get(0).get(0)).unwrap(), [1.0, 1.0, 5.0, 5.0]);
    }
}
