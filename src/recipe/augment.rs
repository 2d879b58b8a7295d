//! Data augmentation as torchvision applies it to each training sample, before `ToTensor()`:
//!
//! ```python
//! transforms.Compose([transforms.RandomCrop(32, padding=P),   # --random-crop P
//!                     transforms.RandomHorizontalFlip(),       # --hflip
//!                     transforms.ToTensor(), transforms.Normalize((0.5,)*3, (0.5,)*3)])
//! ```
//!
//! `RandomCrop` pads the `uint8` image with `P` zeros on every side (`F.pad(img, P, fill=0)`),
//! then cuts a 32x32 window at row `i`, column `j`, drawn as `torch.randint(0, 2P + 1, (1,))`
//! twice (torchvision's `RandomCrop.get_params`; with `P = 0` it draws nothing); the flip mirrors
//! the columns when `torch.rand(1) < 0.5`. With `num_workers=0` the DataLoader calls the
//! transforms in the order of the epoch's permutation, so the draws come from the global
//! generator, sample after sample, after the epoch's two seeds: [`Augment::draw`] makes them with
//! [`crate::rng::Mt19937`] (libtorch's generator, continued in Rust). Zero padding is 0 in the
//! `uint8` image, so -1 after normalisation.
//!
//! Source: torchvision 0.26 `transforms/transforms.py` (`RandomCrop`, `RandomHorizontalFlip`).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::{data::IMAGE_SIDE, error::Result, rng::Mt19937};

/// Largest `--random-crop` padding: the window must stay within the padded image's `u8` offsets.
pub const MAX_PADDING: u32 = 32;

/// Which augmentation a run applies to its training samples (never to validation or test).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// `RandomCrop(32, padding=P)`: `Some(P)`.
    pub random_crop: Option<u32>,
    /// `RandomHorizontalFlip(p=0.5)`.
    pub hflip: bool,
}

/// One sample's draws: the crop window's top-left corner in the padded image, and the flip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleDraw {
    /// Row of the window in the padded image, `0..=2P` (0 without a crop).
    pub top: u8,
    /// Column of the window in the padded image, `0..=2P`.
    pub left: u8,
    /// Mirror the columns.
    pub flip: bool,
}

/// `--augment crop-flip`: the standard CIFAR-10 augmentation, `RandomCrop(32, padding=4)` and
/// `RandomHorizontalFlip()`.
pub const CROP_FLIP: Augment = Augment { random_crop: Some(4), hflip: true };

impl Augment {
    /// How tables and TensorBoard name it: `none`, `crop-flip` ([`CROP_FLIP`]), else its parts
    /// (`crop2`, `hflip`, `crop2+hflip`).
    pub fn name(&self) -> String {
        match (self.random_crop, self.hflip) {
            _ if *self == CROP_FLIP => "crop-flip".to_string(),
            (None, false) => "none".to_string(),
            (None, true) => "hflip".to_string(),
            (Some(p), false) => format!("crop{p}"),
            (Some(p), true) => format!("crop{p}+hflip"),
        }
    }

    /// No augmentation (the reference program).
    pub fn is_none(&self) -> bool {
        self.random_crop.is_none() && !self.hflip
    }

    /// Raw generator draws one sample takes.
    pub fn draws_per_sample(&self) -> usize {
        2 * usize::from(self.random_crop.is_some_and(|p| p > 0)) + usize::from(self.hflip)
    }

    /// The draws of `n` samples, in the epoch's order, from `gen` (advanced past them).
    pub fn draw(&self, gen: &mut Mt19937, n: usize) -> Vec<SampleDraw> {
        let span = self.random_crop.map_or(1, |p| 2 * p + 1);
        (0..n)
            .map(|_| {
                let (top, left) = if span > 1 { (gen.randint(span) as u8, gen.randint(span) as u8) } else { (0, 0) };
                let flip = self.hflip && gen.rand_f32() < 0.5;
                SampleDraw { top, left, flip }
            })
            .collect()
    }

    /// The padding `P` (0 without a crop).
    pub fn padding(&self) -> i64 {
        i64::from(self.random_crop.unwrap_or(0))
    }

    /// Applies the draws to a batch of `uint8 [B, 3, 32, 32]` images (any device), one draw per
    /// image; pure data movement, so the bytes are torchvision's on any device.
    ///
    /// # Errors
    /// A libtorch error (a batch and draws of different lengths).
    pub fn apply(&self, images: &Tensor, draws: &[SampleDraw]) -> Result<Tensor> {
        let device = images.device();
        let (b, side, pad) = (draws.len() as i64, IMAGE_SIDE, self.padding());
        let padded = if pad > 0 { images.f_constant_pad_nd([pad, pad, pad, pad])? } else { images.shallow_clone() };
        let wide = side + 2 * pad;
        let (mut rows, mut cols) = (Vec::with_capacity(draws.len() * 32), Vec::with_capacity(draws.len() * 32));
        for d in draws {
            rows.extend((0..side).map(|y| i64::from(d.top) + y));
            cols.extend((0..side).map(|x| i64::from(d.left) + if d.flip { side - 1 - x } else { x }));
        }
        let rows = Tensor::from_slice(&rows).to_device(device).view([b, 1, side, 1]).expand([b, 3, side, wide], false);
        let cols = Tensor::from_slice(&cols).to_device(device).view([b, 1, 1, side]).expand([b, 3, side, side], false);
        let out = padded.f_gather(2, &rows, false)?.f_gather(3, &cols, false)?;
        debug_assert_eq!(out.kind(), Kind::Uint8);
        Ok(out)
    }

    /// The source pixel of output pixel `(y, x)` of a sample with draw `d`, in the unpadded image:
    /// `None` where the window reads padding (a zero byte). For kernels that gather pixels
    /// themselves (`kernels::lenet`).
    #[inline]
    pub fn source(&self, d: SampleDraw, y: usize, x: usize) -> Option<(usize, usize)> {
        let pad = self.padding() as isize;
        let x = if d.flip { 31 - x } else { x };
        let (sy, sx) = (y as isize + isize::from(d.top) - pad, x as isize + isize::from(d.left) - pad);
        ((0..32).contains(&sy) && (0..32).contains(&sx)).then_some((sy as usize, sx as usize))
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    /// A 2-image batch whose byte at (image n, channel c, row y, column x) is `(n*3 + c)*32 + y + x`
    /// (mod 256), plus one, so that no image byte is 0 like the padding.
    fn batch() -> Tensor {
        let v: Vec<u8> = (0..2 * 3 * 32 * 32)
            .map(|i| {
                let (n, c, y, x) = (i / 3072, (i / 1024) % 3, (i / 32) % 32, i % 32);
                (((n * 3 + c) * 32 + y + x) % 255 + 1) as u8
            })
            .collect();
        Tensor::from_slice(&v).view([2, 3, 32, 32])
    }

    fn px(t: &Tensor, n: i64, c: i64, y: i64, x: i64) -> u8 {
        t.int64_value(&[n, c, y, x]) as u8
    }

    #[test]
    fn crop_and_flip_move_pixels_as_torchvision_does() {
        let aug = Augment { random_crop: Some(4), hflip: true };
        let images = batch();
        // Image 0: window at row 0, column 8 of the 40x40 padded image, not flipped: output row y
        // is source row y - 4 (rows 0..3 are padding), column x is source column x + 4 (the last
        // 4 columns are padding). Image 1: window at (4, 4), flipped: the image mirrored.
        let draws = [SampleDraw { top: 0, left: 8, flip: false }, SampleDraw { top: 4, left: 4, flip: true }];
        let out = aug.apply(&images, &draws).unwrap();
        assert_eq!(out.size(), [2, 3, 32, 32]);
        assert_eq!(out.kind(), Kind::Uint8);
        assert_eq!(px(&out, 0, 1, 3, 5), 0, "padding row");
        assert_eq!(px(&out, 0, 1, 4, 5), px(&images, 0, 1, 0, 9));
        assert_eq!(px(&out, 0, 2, 31, 27), px(&images, 0, 2, 27, 31));
        assert_eq!(px(&out, 0, 2, 31, 28), 0, "padding column");
        for (y, x) in [(0, 0), (7, 30), (31, 31)] {
            assert_eq!(px(&out, 1, 0, y, x), px(&images, 1, 0, y, 31 - x));
        }
        // The per-pixel rule the fast kernels use says the same for every pixel.
        for (n, d) in draws.iter().enumerate() {
            for (y, x) in (0..32).flat_map(|y| (0..32).map(move |x| (y, x))) {
                let want = aug.source(*d, y, x).map_or(0, |(sy, sx)| px(&images, n as i64, 2, sy as i64, sx as i64));
                assert_eq!(px(&out, n as i64, 2, y as i64, x as i64), want, "image {n} ({y}, {x})");
            }
        }
    }

    #[test]
    fn a_centred_unflipped_window_is_the_identity() {
        let aug = Augment { random_crop: Some(4), hflip: false };
        let images = batch();
        let out = aug.apply(&images, &[SampleDraw { top: 4, left: 4, flip: false }; 2]).unwrap();
        assert!(out.equal(&images));
        let none = Augment { random_crop: None, hflip: true };
        let out = none.apply(&images, &[SampleDraw::default(); 2]).unwrap();
        assert!(out.equal(&images));
    }

    #[test]
    fn draws_are_libtorchs_randint_and_rand_sample_after_sample() {
        let _rng = crate::rng::lock_global_rng();
        tch::manual_seed(1234);
        // torchvision's order for each sample: randint(0, 9) for the row, for the column, then rand(1).
        let want: Vec<SampleDraw> = (0..50)
            .map(|_| {
                let top = Tensor::randint(9, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u8;
                let left = Tensor::randint(9, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u8;
                let flip = Tensor::rand([1], (Kind::Float, Device::Cpu)).double_value(&[0]) < 0.5;
                SampleDraw { top, left, flip }
            })
            .collect();
        let got = Augment { random_crop: Some(4), hflip: true }.draw(&mut Mt19937::new(1234), 50);
        assert_eq!(got, want);
        assert!(got.iter().any(|d| d.flip) && got.iter().any(|d| !d.flip));
        assert!(got.iter().any(|d| d.top == 8) && got.iter().any(|d| d.left == 0));
    }

    #[test]
    fn names_say_the_preset_or_the_parts() {
        let names: Vec<String> = [CROP_FLIP, Augment::default(), Augment { random_crop: Some(2), hflip: true }, Augment { random_crop: Some(4), hflip: false }, Augment { random_crop: None, hflip: true }]
            .iter()
            .map(Augment::name)
            .collect();
        assert_eq!(names, ["crop-flip", "none", "crop2+hflip", "crop4", "hflip"]);
    }

    #[test]
    fn padding_zero_draws_nothing_for_the_crop() {
        let aug = Augment { random_crop: Some(0), hflip: true };
        assert_eq!(aug.draws_per_sample(), 1);
        let (mut a, mut b) = (Mt19937::new(5), Mt19937::new(5));
        let d = aug.draw(&mut a, 3);
        assert!(d.iter().all(|d| d.top == 0 && d.left == 0));
        for _ in 0..3 {
            b.next_u32();
        }
        assert_eq!(a, b);
    }
}
