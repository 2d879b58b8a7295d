//! `predict --explain OUT.png`: where the network looked. The saliency map of Simonyan, Vedaldi
//! and Zisserman, "Deep Inside Convolutional Networks" (ICLR workshop 2014): the gradient of the
//! top class's logit with respect to the input image, its absolute value's maximum over the
//! three colour channels, scaled to `[0, 1]` per image. (Not Grad-CAM: at conv2's 10x10 the map
//! would be coarser than the 32x32 image itself.)
//!
//! The picture has one row per image: the image upscaled [`SCALE`] times (nearest neighbour, so
//! its pixels stay visible), and beside it the same image in grey with the saliency laid over it
//! in red (opacity proportional to the saliency).

use std::path::Path;

use tch::{Kind, Tensor};

use crate::{
    error::{Error, Result},
    run_dir::write_atomic,
};

/// Upscaling of each 32x32 image in the picture.
pub const SCALE: u32 = 8;
/// Pixels between the panels.
const GAP: u32 = 8;

/// Saliency maps, `float32 [B, 32, 32]` in `[0, 1]`, of `xs` (normalised `float32 [B, 3, 32,
/// 32]`) under `forward` (to `[B, classes]` logits): `|d logit_top / d x|`, max over channels,
/// divided by its maximum over the image (a map of zeros stays zeros).
pub fn saliency(forward: &dyn Fn(&Tensor) -> Tensor, xs: &Tensor) -> Tensor {
    let x = xs.detach().set_requires_grad(true);
    let logits = forward(&x);
    let top = logits.argmax(-1, true);
    let picked = logits.gather(1, &top, false).sum(Kind::Float);
    let grad = Tensor::run_backward(&[picked], &[&x], false, false).remove(0);
    tch::no_grad(|| {
        let g = grad.abs().amax([1], false); // [B, 32, 32]
        let max = g.amax([1, 2], true).clamp_min(f64::MIN_POSITIVE);
        g / max
    })
}

/// Draws the picture (see the module doc) of `images` (`uint8 [B, 3, 32, 32]`) and their
/// saliency `maps` (`[B, 32, 32]` in `[0, 1]`) to `path`, a PNG.
///
/// # Errors
/// [`Error::Io`] naming `path` when it cannot be written; [`Error::Chart`] when it cannot be encoded.
pub fn draw(path: &Path, images: &Tensor, maps: &Tensor) -> Result<()> {
    let n = images.size()[0] as u32;
    let side = 32 * SCALE;
    let (width, height) = (2 * side + 3 * GAP, n * (side + GAP) + GAP);
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    for i in 0..n {
        let img = Vec::<u8>::try_from(images.get(i as i64).to_device(tch::Device::Cpu).flatten(0, -1)).expect("uint8 images");
        let map = Vec::<f32>::try_from(maps.get(i as i64).to_device(tch::Device::Cpu).to_kind(Kind::Float).flatten(0, -1)).expect("float maps");
        let top = GAP + i * (side + GAP);
        for y in 0..side {
            for x in 0..side {
                let p = ((y / SCALE) * 32 + x / SCALE) as usize;
                let rgb = [img[p], img[1024 + p], img[2048 + p]];
                canvas.put_pixel(GAP + x, top + y, image::Rgb(rgb));
                let grey = (0.299 * f32::from(rgb[0]) + 0.587 * f32::from(rgb[1]) + 0.114 * f32::from(rgb[2])) * 0.8;
                let a = map[p].clamp(0.0, 1.0);
                let mix = |over: f32| (grey * (1.0 - a) + over * a).round() as u8;
                canvas.put_pixel(2 * GAP + side + x, top + y, image::Rgb([mix(255.0), mix(0.0), mix(0.0)]));
            }
        }
    }
    let mut bytes = Vec::new();
    canvas
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| Error::Chart { path: path.to_path_buf(), reason: e.to_string() })?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe whose logits are the pixel mean times 1, 2, 3: the top logit's gradient is the
    /// same 3/3072 at every pixel, so the saliency is 1 everywhere.
    #[test]
    fn a_pixel_mean_probe_has_uniform_saliency() {
        let probe = |x: &Tensor| x.mean_dim(&[1i64, 2, 3][..], true, Kind::Float).view([-1, 1]) * Tensor::from_slice(&[1f32, 2.0, 3.0]).view([1, 3]);
        tch::manual_seed(0);
        let xs = Tensor::rand([2, 3, 32, 32], (Kind::Float, tch::Device::Cpu)) + 0.1;
        let s = saliency(&probe, &xs);
        assert_eq!(s.size(), [2, 32, 32]);
        assert_eq!(Vec::<f32>::try_from(s.flatten(0, -1)).unwrap(), vec![1.0; 2048]);
        // A probe reading one pixel only: the map is 1 there and 0 elsewhere.
        let one = |x: &Tensor| x.select(1, 0).select(1, 5).select(1, 7).view([-1, 1]) * Tensor::from_slice(&[1f32, -1.0]).view([1, 2]);
        let s = saliency(&one, &xs);
        assert_eq!(s.sum(Kind::Float).double_value(&[]), 2.0);
        assert_eq!(s.get(0).get(5).get(7).double_value(&[]), 1.0);
    }
}
