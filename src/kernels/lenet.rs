//! The gradients of one batch for [`crate::model::Net`] on the kernels of this module's parent:
//! phase 1 runs each chunk of 8 images through the forward pass, the cross-entropy and the
//! backward pass (on whichever worker takes it); phase 2 computes the linear layers' weight
//! gradients by rows and conv1's by chunk and output pair; the chunks' partial convolution
//! gradients are then added in chunk order. Line by line the reference's
//!
//! ```python
//! x = self.pool(F.relu(self.conv1(x))); x = self.pool(F.relu(self.conv2(x)))
//! x = torch.flatten(x, 1); x = F.relu(self.fc1(x)); x = F.relu(self.fc2(x)); x = self.fc3(x)
//! loss = F.cross_entropy(x, labels); loss.backward()
//! ```

use std::ops::Range;

use rayon::prelude::*;

use super::{conv, dense, multiversion, pool, SendPtr, L};
use crate::recipe::{
    augment::{Augment, SampleDraw},
    loss::Objective,
};

/// Bytes of one image, `uint8 [3, 32, 32]`.
pub(crate) const IMAGE: usize = 3 * 32 * 32;

/// `ToTensor()` then `Normalize(0.5, 0.5)` of each byte value, in float32 exactly as the reference
/// computes it (`x / 255`, then `(x - 0.5) / 0.5`; see [`crate::data::normalize`]).
const NORMALIZE: [f32; 256] = {
    let mut t = [0f32; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as f32 / 255.0 - 0.5) / 0.5;
        b += 1;
    }
    t
};

/// Elements of each parameter in `Net::parameters()` order (`conv1.weight [6, 3, 5, 5]` ...
/// `fc3.bias [classes]`).
pub(crate) fn param_sizes(classes: usize) -> [usize; 10] {
    [6 * 3 * 25, 6, 16 * 6 * 25, 16, 120 * 400, 120, 84 * 120, 84, classes * 84, classes]
}

/// Offsets of the convolution gradients within a chunk's partial sums: conv1.weight,
/// conv1.bias, conv2.weight, conv2.bias, end.
const CONV_PARTS: [usize; 5] = [0, 450, 456, 2856, 2872];

/// One training batch on the host: the resident images and labels and this step's rows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Inputs<'a> {
    /// `uint8 [N, 3, 32, 32]`, flat.
    pub images: &'a [u8],
    /// `int64 [N]`, each in `0..classes`.
    pub labels: &'a [i64],
    /// `int64 [B]`: the rows of this batch, each in `0..N`.
    pub index: &'a [i64],
    /// The augmentation of each row of `index` (`None`: none), applied while the batch is
    /// gathered into the lanes.
    pub augment: Option<(Augment, &'a [SampleDraw])>,
    /// The loss (label smoothing).
    pub objective: Objective,
}

/// One chunk's activations and gradients (sizes per the layout of [`super`]); reused every step.
#[derive(Debug)]
struct Chunk {
    /// Images in this chunk (the rest of the lanes are zero padding).
    lanes: usize,
    x0: Vec<f32>,
    /// conv1's output, then its gradient.
    a1: Vec<f32>,
    p1: Vec<f32>,
    i1: Vec<u8>,
    /// conv2's output, then its gradient.
    a2: Vec<f32>,
    p2: Vec<f32>,
    i2: Vec<u8>,
    h1: Vec<f32>,
    h2: Vec<f32>,
    z: Vec<f32>,
    dz: Vec<f32>,
    dh2: Vec<f32>,
    dh1: Vec<f32>,
    dp2: Vec<f32>,
    dp1: Vec<f32>,
    /// The linear layers' inputs transposed, `[L][n_in]`, for phase 2.
    xt1: Vec<f32>,
    xt2: Vec<f32>,
    xt3: Vec<f32>,
    /// This chunk's convolution weight and bias gradients (see [`CONV_PARTS`]).
    dconv: Vec<f32>,
    /// The sum of this chunk's image losses, and how many of its images were classified right.
    loss: f64,
    correct: usize,
}

impl Chunk {
    fn new(classes: usize) -> Chunk {
        let f = |n: usize| vec![0f32; n * L];
        Chunk {
            lanes: 0,
            x0: f(IMAGE),
            a1: f(6 * 28 * 28),
            p1: f(6 * 14 * 14),
            i1: vec![0; 6 * 14 * 14 * L],
            a2: f(16 * 10 * 10),
            p2: f(400),
            i2: vec![0; 400 * L],
            h1: f(120),
            h2: f(84),
            z: f(classes),
            dz: f(classes),
            dh2: f(84),
            dh1: f(120),
            dp2: f(400),
            dp1: f(6 * 14 * 14),
            xt1: f(400),
            xt2: f(120),
            xt3: f(84),
            dconv: vec![0.0; CONV_PARTS[4]],
            loss: 0.0,
            correct: 0,
        }
    }
}

/// The batch gradients of `Net` on the CPU kernels, with the buffers and the worker threads they
/// use.
#[derive(Debug)]
pub(crate) struct LeNet {
    classes: usize,
    chunks: Vec<Chunk>,
    /// The gradient of the batch-mean loss for each parameter, `Net::parameters()` order, after
    /// [`LeNet::gradients`].
    pub grads: [Vec<f32>; 10],
    pool: rayon::ThreadPool,
}

impl LeNet {
    /// Buffers for a network of `classes` outputs, and `threads` worker threads.
    ///
    /// # Errors
    /// The threads could not be started.
    pub(crate) fn new(classes: usize, threads: usize) -> Result<LeNet, rayon::ThreadPoolBuildError> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("fast-kernels-{i}")).build()?;
        Ok(LeNet { classes, chunks: Vec::new(), grads: param_sizes(classes).map(|n| vec![0.0; n]), pool })
    }

    /// Worker threads.
    pub(crate) fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Computes into [`LeNet::grads`] the gradient of the mean cross-entropy of batch `inp` with
    /// respect to every parameter (`w`, in `Net::parameters()` order, float32, PyTorch's shapes),
    /// and returns the sum of the batch's losses and how many images the network classified
    /// right. With `features` false (conv1 and conv2 frozen), their gradients are left as they
    /// were and the backward pass stops at fc1.
    ///
    /// # Errors
    /// A batch row outside the images, or a label of the batch outside the classes; nothing is
    /// computed.
    ///
    /// # Panics
    /// A parameter of the wrong size, or images and labels of different counts (the caller
    /// checks these; see `train::step::fast_cpu`).
    pub(crate) fn gradients(&mut self, w: &[&[f32]; 10], inp: &Inputs<'_>, features: bool) -> Result<(f64, usize), BadBatch> {
        let (bsz, classes) = (inp.index.len(), self.classes);
        assert!(w.iter().zip(param_sizes(classes)).all(|(p, n)| p.len() == n), "parameter sizes");
        assert!(inp.images.len() == inp.labels.len() * IMAGE, "images and labels");
        let rows = inp.labels.len() as i64;
        if let Some(&r) = inp.index.iter().find(|r| !(0..rows).contains(r)) {
            return Err(BadBatch::Row { row: r, rows });
        }
        if let Some(y) = inp.index.iter().map(|&r| inp.labels[r as usize]).find(|y| !(0..classes as i64).contains(y)) {
            return Err(BadBatch::Label { label: y, classes });
        }
        let n = bsz.div_ceil(L);
        while self.chunks.len() < n {
            self.chunks.push(Chunk::new(classes));
        }
        let chunks = &mut self.chunks[..n];
        let grads = self.grads.each_mut().map(|g| SendPtr(g.as_mut_ptr()));
        self.pool.install(|| {
            chunks.par_iter_mut().enumerate().for_each(|(j, ch)| {
                // SAFETY: the sizes were checked above; each chunk writes only its own buffers.
                unsafe { chunk_pass(ch, w, inp, j * L, bsz, classes, features) }
            });
            // Written by the conv1 tasks below, each its own rows (`Vec::as_mut_ptr` makes no
            // reference to the buffer, so the shared borrows of the chunks that follow allow it).
            let dconv: Vec<SendPtr<f32>> = chunks.iter_mut().map(|c| SendPtr(c.dconv.as_mut_ptr())).collect();
            let chunks = &*chunks;
            let parts = |dy: fn(&Chunk) -> &Vec<f32>, xt: fn(&Chunk) -> &Vec<f32>| -> Vec<dense::Part> {
                chunks.iter().map(|c| dense::Part { dy: dy(c).as_ptr(), xt: xt(c).as_ptr(), lanes: c.lanes }).collect()
            };
            let layers = [
                (parts(|c| &c.dh1, |c| &c.xt1), 400, 4),
                (parts(|c| &c.dh2, |c| &c.xt2), 120, 6),
                (parts(|c| &c.dz, |c| &c.xt3), 84, 8),
            ];
            // Phase 2: the linear layers' weight gradients by rows, and conv1's by chunk and
            // output pair (a fifth of a chunk's work: these small tasks even out the threads).
            let mut tasks: Vec<Task> = (0..120).step_by(8).map(|r| Task::Dense(0, r..r + 8)).collect();
            tasks.extend([Task::Dense(1, 0..28), Task::Dense(1, 28..56), Task::Dense(1, 56..84), Task::Dense(2, 0..classes)]);
            if features {
                tasks.extend((0..chunks.len()).flat_map(|j| (0..6).step_by(2).map(move |o| Task::Conv1(j, o..o + 2))));
            }
            tasks.par_iter().for_each(|task| match task {
                Task::Dense(layer, rows) => {
                    let (parts, n_in, p) = &layers[*layer];
                    // SAFETY: every part points into a chunk's buffers, which phase 1 filled
                    // and nobody writes now; each task writes only its rows.
                    unsafe { dense_task(parts, *n_in, rows.clone(), grads[*p].0, grads[*p + 1].0) }
                }
                Task::Conv1(j, outputs) => {
                    let c = &chunks[*j];
                    // SAFETY: each task writes only its outputs' rows of chunk j's partial sums,
                    // which no other task reads or writes; `a1` and `x0` are only read.
                    unsafe { conv1_task(c.a1.as_ptr(), c.x0.as_ptr(), outputs.clone(), dconv[*j].0) }
                }
            });
            if features {
                for (p, r) in CONV_PARTS.windows(2).enumerate() {
                    for (e, k) in (r[0]..r[1]).enumerate() {
                        // SAFETY: `grads[p]` has `r[1] - r[0]` elements; nothing else touches them now.
                        unsafe { *grads[p].0.add(e) = chunks.iter().map(|c| c.dconv[k]).fold(0.0, |s, g| s + g) };
                    }
                }
            }
        });
        let chunks = &self.chunks[..n];
        Ok((chunks.iter().map(|c| c.loss).sum(), chunks.iter().map(|c| c.correct).sum()))
    }
}

impl LeNet {
    /// `Net.forward` (no gradient) of the images `images` (`uint8 [B, 3, 32, 32]`, flat, each
    /// normalised as `ToTensor()` + `Normalize(0.5, 0.5)`, as in training): the logits, `float32
    /// [B, classes]` row-major, `w` being the parameters as for [`LeNet::gradients`]. The same
    /// kernels as a training step's forward pass, chunk by chunk on the worker threads: each
    /// image's logits have the same bits at any thread count and batch size, and agree with
    /// libtorch's within rounding.
    ///
    /// # Panics
    /// A parameter of the wrong size, or `images` not a whole number of images.
    pub(crate) fn logits(&mut self, w: &[&[f32]; 10], images: &[u8]) -> Vec<f32> {
        let classes = self.classes;
        assert!(w.iter().zip(param_sizes(classes)).all(|(p, n)| p.len() == n), "parameter sizes");
        assert!(images.len().is_multiple_of(IMAGE), "whole images");
        let bsz = images.len() / IMAGE;
        let mut out = vec![0f32; bsz * classes];
        let n = bsz.div_ceil(L);
        while self.chunks.len() < n {
            self.chunks.push(Chunk::new(classes));
        }
        let (chunks, dst) = (&mut self.chunks[..n], SendPtr(out.as_mut_ptr()));
        self.pool.install(|| {
            chunks.par_iter_mut().enumerate().for_each(|(j, ch)| {
                // SAFETY: sizes checked above; chunk j writes only its own buffers and rows
                // `8j..8j + lanes` of `out`.
                unsafe { forward_chunk(ch, w, images, j * L, bsz, classes, dst) }
            });
        });
        out
    }
}

/// Worker threads for the kernels: libtorch's intra-op thread count (`--threads`, or
/// `OMP_NUM_THREADS`, or the physical cores), at most one per logical CPU (more only take turns).
pub(crate) fn threads() -> usize {
    (tch::get_num_threads().max(1) as usize).min(crate::device::logical_cpus().unwrap_or(1))
}

/// A batch [`LeNet::gradients`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadBatch {
    /// A batch index that is not a row of the `rows` images.
    Row { row: i64, rows: i64 },
    /// A label of the batch outside the network's `classes` outputs.
    Label { label: i64, classes: usize },
}

/// A phase 2 task: rows of a linear layer (0 to 2: fc1 to fc3), or a pair of conv1's outputs of
/// one chunk.
#[derive(Debug)]
enum Task {
    Dense(usize, Range<usize>),
    Conv1(usize, Range<usize>),
}

multiversion! {
    /// Phase 2 for rows `rows` of one linear layer (see [`dense::weight_grad`]).
    unsafe fn dense_task(parts: &[dense::Part], n_in: usize, rows: Range<usize>, dw: *mut f32, db: *mut f32) {
        dense::weight_grad(parts, n_in, rows, dw, db)
    }
}

multiversion! {
    /// Phase 1 for the chunk of images `first..first + 8` of a batch of `bsz`.
    unsafe fn chunk_pass(ch: &mut Chunk, w: &[&[f32]; 10], inp: &Inputs<'_>, first: usize, bsz: usize, classes: usize, features: bool) {
        let lanes = (bsz - first).min(L);
        ch.lanes = lanes;
        // The batch, gathered into the lanes (cropped and flipped when the run augments) and
        // normalised (`ToTensor()`, `Normalize(0.5, 0.5)`); padding bytes are 0.
        for l in 0..L {
            let img = (l < lanes).then(|| &inp.images[inp.index[first + l] as usize * IMAGE..][..IMAGE]);
            match (img, inp.augment) {
                (Some(img), Some((aug, draws))) => {
                    let d = draws[first + l];
                    for c in 0..3 {
                        for y in 0..32 {
                            for x in 0..32 {
                                let byte = aug.source(d, y, x).map_or(0, |(sy, sx)| img[(c * 32 + sy) * 32 + sx]);
                                ch.x0[((c * 32 + y) * 32 + x) * L + l] = NORMALIZE[usize::from(byte)];
                            }
                        }
                    }
                }
                _ => {
                    for e in 0..IMAGE {
                        ch.x0[e * L + l] = img.map_or(0.0, |img| NORMALIZE[usize::from(img[e])]);
                    }
                }
            }
        }
        let p = |i: usize| w[i].as_ptr();
        forward_layers(ch, w, classes);
        // loss = F.cross_entropy(x, labels, label_smoothing=eps): mean over the batch of
        // sum_c q_c (logsumexp(z) - z[c]) with q = (1 - eps) onehot(label) + eps / K (plain
        // cross-entropy at eps = 0); its gradient (softmax(z) - q) / B, zero on the padding lanes.
        (ch.loss, ch.correct) = (0.0, 0);
        for l in 0..L {
            let z = |c: usize| ch.z[c * L + l];
            if l >= lanes {
                (0..classes).for_each(|c| ch.dz[c * L + l] = 0.0);
                continue;
            }
            let y = inp.labels[inp.index[first + l] as usize] as usize;
            let (mut m, mut arg) = (z(0), 0);
            for c in 1..classes {
                if z(c) > m {
                    (m, arg) = (z(c), c);
                }
            }
            let s: f32 = (0..classes).map(|c| (z(c) - m).exp()).sum();
            let lse = m + s.ln();
            ch.loss += match inp.objective.label_smoothing {
                0.0 => f64::from(lse - z(y)),
                _ => (0..classes).map(|c| f64::from(inp.objective.target(c, y, classes)) * f64::from(lse - z(c))).sum(),
            };
            ch.correct += usize::from(arg == y);
            for c in 0..classes {
                ch.dz[c * L + l] = ((z(c) - m).exp() / s - inp.objective.target(c, y, classes)) / bsz as f32;
            }
        }
        for (xt, x, n) in [(&mut ch.xt1, &ch.p2, 400), (&mut ch.xt2, &ch.h1, 120), (&mut ch.xt3, &ch.h2, 84)] {
            for i in 0..n {
                for l in 0..L {
                    xt[l * n + i] = x[i * L + l];
                }
            }
        }
        // loss.backward(): fc3, fc2, fc1 (input gradients; their weights' come in phase 2)
        dense::input_grad(ch.dz.as_ptr(), classes, p(8), 84, Some(ch.h2.as_ptr()), ch.dh2.as_mut_ptr());
        dense::input_grad(ch.dh2.as_ptr(), 84, p(6), 120, Some(ch.h1.as_ptr()), ch.dh1.as_mut_ptr());
        if !features {
            return;
        }
        dense::input_grad(ch.dh1.as_ptr(), 120, p(4), 400, None, ch.dp2.as_mut_ptr());
        // pool and ReLU, conv2 (weights and input), pool and ReLU, conv1 (weights)
        pool::backward(ch.dp2.as_ptr(), ch.p2.as_ptr(), ch.i2.as_ptr(), (16, 10, 10), ch.a2.as_mut_ptr());
        let d = ch.dconv.as_mut_ptr();
        conv::weight_grad::<2, 5, 6, 14, 14, 16>(ch.a2.as_ptr(), ch.p1.as_ptr(), 0..16, d.add(CONV_PARTS[2]), d.add(CONV_PARTS[3]));
        conv::input_grad::<6, 5, 16, 10, 10>(ch.a2.as_ptr(), p(2), ch.dp1.as_mut_ptr());
        pool::backward(ch.dp1.as_ptr(), ch.p1.as_ptr(), ch.i1.as_ptr(), (6, 28, 28), ch.a1.as_mut_ptr());
        // conv1's weights: a phase 2 task per pair of its outputs (`conv1_task`).
    }
}

/// `Net.forward` of the chunk whose normalised images are in `ch.x0`: the logits into `ch.z`
/// (`[classes][L]`), every activation (and the pools' argmax) kept for the backward pass.
///
/// # Safety
/// `w` holds `Net`'s parameters ([`param_sizes`]`(classes)`) and `ch` was made for `classes`.
#[inline(always)]
unsafe fn forward_layers(ch: &mut Chunk, w: &[&[f32]; 10], classes: usize) {
    let p = |i: usize| w[i].as_ptr();
    // x = self.pool(F.relu(self.conv1(x)))                          [6, 28, 28] -> [6, 14, 14]
    unsafe { conv::forward::<6, 2, 5, 3, 32, 32, 6>(ch.x0.as_ptr(), p(0), p(1), ch.a1.as_mut_ptr()) };
    unsafe { pool::forward(ch.a1.as_ptr(), (6, 28, 28), ch.p1.as_mut_ptr(), ch.i1.as_mut_ptr()) };
    // x = self.pool(F.relu(self.conv2(x)))                          [16, 10, 10] -> [16, 5, 5]
    unsafe { conv::forward::<4, 2, 5, 6, 14, 14, 16>(ch.p1.as_ptr(), p(2), p(3), ch.a2.as_mut_ptr()) };
    unsafe { pool::forward(ch.a2.as_ptr(), (16, 10, 10), ch.p2.as_mut_ptr(), ch.i2.as_mut_ptr()) };
    // x = torch.flatten(x, 1); x = F.relu(self.fc1(x)); x = F.relu(self.fc2(x)); x = self.fc3(x)
    unsafe { dense::forward(ch.p2.as_ptr(), 400, p(4), p(5), 120, true, ch.h1.as_mut_ptr()) };
    unsafe { dense::forward(ch.h1.as_ptr(), 120, p(6), p(7), 84, true, ch.h2.as_mut_ptr()) };
    unsafe { dense::forward(ch.h2.as_ptr(), 84, p(8), p(9), classes, false, ch.z.as_mut_ptr()) };
}

multiversion! {
    /// The logits of the images `first..first + 8` (fewer at the end) of the `bsz` images in
    /// `images` (`uint8 [bsz, 3, 32, 32]`), normalised as in training, into rows `first..` of
    /// `out` (`float32 [bsz, classes]`).
    unsafe fn forward_chunk(ch: &mut Chunk, w: &[&[f32]; 10], images: &[u8], first: usize, bsz: usize, classes: usize, out: SendPtr<f32>) {
        let lanes = (bsz - first).min(L);
        ch.lanes = lanes;
        for l in 0..L {
            let img = (l < lanes).then(|| &images[(first + l) * IMAGE..][..IMAGE]);
            for e in 0..IMAGE {
                ch.x0[e * L + l] = img.map_or(0.0, |img| NORMALIZE[usize::from(img[e])]);
            }
        }
        forward_layers(ch, w, classes);
        for l in 0..lanes {
            for c in 0..classes {
                *out.0.add((first + l) * classes + c) = ch.z[c * L + l];
            }
        }
    }
}

multiversion! {
    /// conv1's weight and bias gradients for `outputs` (a pair) of one chunk, from its output
    /// gradient `da1` and its input `x0`, into its partial sums `dconv`.
    unsafe fn conv1_task(da1: *const f32, x0: *const f32, outputs: Range<usize>, dconv: *mut f32) {
        conv::weight_grad::<2, 5, 3, 32, 32, 6>(da1, x0, outputs, dconv.add(CONV_PARTS[0]), dconv.add(CONV_PARTS[1]))
    }
}

#[cfg(test)]
mod tests {
    use tch::{nn, nn::Module, Device, Kind, Tensor};

    use super::*;
    use crate::{data::normalize, model::Net};

    /// A PyTorch-initialised `Net` of `classes` outputs and `n` random images and labels.
    fn setup(classes: i64, n: i64, seed: i64) -> (nn::VarStore, Net, Tensor, Tensor) {
        let _rng = crate::rng::lock_global_rng();
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), classes);
        net.init_pytorch();
        let images = Tensor::randint(256, [n, 3, 32, 32], (Kind::Uint8, Device::Cpu));
        let labels = Tensor::randint(classes, [n], (Kind::Int64, Device::Cpu));
        (vs, net, images, labels)
    }

    fn host<T>(t: &Tensor) -> Vec<T>
    where
        Vec<T>: TryFrom<Tensor, Error = tch::TchError>,
    {
        Vec::<T>::try_from(t.contiguous().view(-1)).unwrap()
    }

    /// Our gradients, loss sum and correct count for `net` on rows `index`.
    fn ours(net: &Net, images: &Tensor, labels: &Tensor, index: &[i64], threads: usize, features: bool) -> (Vec<Vec<f32>>, f64, usize) {
        let w: Vec<Vec<f32>> = net.parameters().iter().map(|(_, p)| host(p)).collect();
        let (images, labels) = (host::<u8>(images), host::<i64>(labels));
        let classes = net.parameters()[9].1.size()[0] as usize;
        let mut k = LeNet::new(classes, threads).unwrap();
        let ws: [&[f32]; 10] = std::array::from_fn(|i| w[i].as_slice());
        let (loss, correct) = k.gradients(&ws, &Inputs { images: &images, labels: &labels, index, augment: None, objective: Objective::default() }, features).unwrap();
        (k.grads.to_vec(), loss, correct)
    }

    /// libtorch's autograd: `F.cross_entropy(net(normalize(x)), y).backward()`.
    fn autograd(net: &Net, images: &Tensor, labels: &Tensor, index: &[i64]) -> (Vec<Vec<f32>>, f64, usize) {
        let index = Tensor::from_slice(index);
        let (xs, ys) = (normalize(&images.index_select(0, &index)), labels.index_select(0, &index));
        let logits = net.forward(&xs);
        let loss = logits.cross_entropy_for_logits(&ys);
        loss.backward();
        let correct = logits.argmax(-1, false).eq_tensor(&ys).sum(Kind::Int64).int64_value(&[]) as usize;
        let grads = net.parameters().iter().map(|(_, p)| host(&p.grad())).collect();
        (grads, loss.double_value(&[]) * index.size()[0] as f64, correct)
    }

    /// The largest difference of `a` from `b`, relative to `b`'s largest magnitude.
    fn rel(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn gradients_equal_libtorch_autograd_within_rounding() {
        // 13 images: a full chunk and a ragged one; 3 classes: fc3 rows not a multiple of 4.
        for (classes, n, index) in [(10, 40, vec![3, 17, 0, 39, 8, 8, 22, 5, 31, 12, 1, 27, 9]), (3, 12, (0..8).collect())] {
            let (_vs, net, images, labels) = setup(classes, n, 7);
            let (want, want_loss, want_correct) = autograd(&net, &images, &labels, &index);
            let (got, loss, correct) = ours(&net, &images, &labels, &index, 2, true);
            for ((name, _), (g, w)) in net.parameters().iter().zip(got.iter().zip(&want)) {
                assert!(w.iter().any(|x| *x != 0.0), "{name}: a zero reference gradient tests nothing");
                let r = rel(g, w);
                assert!(r < 1e-5, "{classes} classes, {name}: relative difference {r}");
            }
            assert!((loss - want_loss).abs() < 1e-5 * want_loss, "loss sum {loss} against {want_loss}");
            assert_eq!(correct, want_correct);
        }
    }

    #[test]
    fn a_row_outside_the_images_or_a_label_outside_the_classes_is_refused() {
        let (images, w) = (vec![0u8; 3 * IMAGE], param_sizes(4).map(|n| vec![0f32; n]));
        let ws: [&[f32]; 10] = std::array::from_fn(|i| w[i].as_slice());
        let mut k = LeNet::new(4, 1).unwrap();
        let mut grads = |labels: &[i64], index: &[i64]| k.gradients(&ws, &Inputs { images: &images, labels, index, augment: None, objective: Objective::default() }, true).map(|_| ());
        assert_eq!(grads(&[0, 1, 2], &[0, 3]), Err(BadBatch::Row { row: 3, rows: 3 }));
        assert_eq!(grads(&[0, 1, 2], &[-1]), Err(BadBatch::Row { row: -1, rows: 3 }));
        // Label 9 is refused only where the batch uses it.
        assert_eq!(grads(&[0, 9, 2], &[2, 1]), Err(BadBatch::Label { label: 9, classes: 4 }));
        assert_eq!(grads(&[0, 9, 2], &[2, 0]), Ok(()));
    }

    #[test]
    fn frozen_features_leave_the_convolution_gradients_and_compute_the_rest() {
        let (_vs, net, images, labels) = setup(10, 20, 8);
        let index: Vec<i64> = (0..11).collect();
        let (want, ..) = autograd(&net, &images, &labels, &index);
        let (got, ..) = ours(&net, &images, &labels, &index, 1, false);
        for i in 0..4 {
            assert!(got[i].iter().all(|g| *g == 0.0), "parameter {i} got a gradient while frozen");
        }
        for i in 4..10 {
            assert!(rel(&got[i], &want[i]) < 1e-5, "parameter {i}");
        }
    }

    #[test]
    fn a_step_has_the_same_bits_at_any_thread_count_and_without_simd() {
        let (_vs, net, images, labels) = setup(10, 60, 9);
        let index: Vec<i64> = (0..37).map(|i| (i * 7) % 60).collect();
        let one = ours(&net, &images, &labels, &index, 1, true);
        let three = ours(&net, &images, &labels, &index, 3, true);
        let bits = |g: &[Vec<f32>]| g.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one.0), bits(&three.0));
        assert_eq!((one.1.to_bits(), one.2), (three.1.to_bits(), three.2));
        // The portable code (no AVX2/FMA) gives the same bits: every product-sum is fused there too.
        let simd = crate::kernels::simd();
        crate::kernels::force_portable(true);
        let portable = ours(&net, &images, &labels, &index, 2, true);
        crate::kernels::force_portable(false);
        assert_eq!(bits(&one.0), bits(&portable.0), "portable against {}", if simd { "AVX2+FMA" } else { "portable" });
        assert_eq!(one.1.to_bits(), portable.1.to_bits());
    }

    #[test]
    fn logits_equal_libtorch_forward_within_rounding_with_the_same_bits_at_any_thread_count() {
        // 21 images: two full chunks and a ragged one; 3 classes: fc3 rows not a multiple of 4.
        for (classes, n) in [(10, 21), (3, 9)] {
            let (_vs, net, images, _) = setup(classes, n, 11);
            let want: Vec<f32> = host(&tch::no_grad(|| net.forward(&normalize(&images))));
            let w: Vec<Vec<f32>> = net.parameters().iter().map(|(_, p)| host(p)).collect();
            let ws: [&[f32]; 10] = std::array::from_fn(|i| w[i].as_slice());
            let bytes = host::<u8>(&images);
            let one = LeNet::new(classes as usize, 1).unwrap().logits(&ws, &bytes);
            assert!(rel(&one, &want) < 1e-5, "{classes} classes: relative difference {}", rel(&one, &want));
            let argmax = |z: &[f32]| z.chunks(classes as usize).map(|r| r.iter().enumerate().fold(0, |a, (c, v)| if *v > r[a] { c } else { a })).collect::<Vec<_>>();
            assert_eq!(argmax(&one), argmax(&want));
            for threads in [2, 3] {
                let mut k = LeNet::new(classes as usize, threads).unwrap();
                assert_eq!(k.logits(&ws, &bytes), one, "{threads} threads");
                // Another batch size (and so other chunk boundaries): each image's logits the same.
                let rows = 5 * classes as usize;
                assert_eq!(k.logits(&ws, &bytes[..5 * IMAGE]), one[..rows], "{threads} threads, 5 images");
            }
        }
    }

    /// Not a test: `cargo test --release --lib step_time -- --ignored --nocapture` prints the time
    /// of one batch of 100's gradients (median of 9 blocks of 50) on 1 and 2 threads.
    #[test]
    #[ignore = "a timing, not a test"]
    fn step_time() {
        let (_vs, net, images, labels) = setup(10, 1000, 3);
        let w: Vec<Vec<f32>> = net.parameters().iter().map(|(_, p)| host(p)).collect();
        let ws: [&[f32]; 10] = std::array::from_fn(|i| w[i].as_slice());
        let (images, labels) = (host::<u8>(&images), host::<i64>(&labels));
        for threads in [1, 2] {
            let mut k = LeNet::new(10, threads).unwrap();
            let mut blocks = Vec::new();
            for b in 0..10 {
                let t = std::time::Instant::now();
                for s in 0..50 {
                    let index: Vec<i64> = (0..100).map(|i| (i * 7 + s * 100) % 1000).collect();
                    k.gradients(&ws, &Inputs { images: &images, labels: &labels, index: &index, augment: None, objective: Objective::default() }, true).unwrap();
                }
                if b > 0 {
                    blocks.push(t.elapsed().as_secs_f64() / 50.0);
                }
            }
            blocks.sort_by(f64::total_cmp);
            println!("{threads} thread(s): {:.3} ms a batch of 100 (blocks {:.3}..{:.3})", 1e3 * blocks[4], 1e3 * blocks[0], 1e3 * blocks[8]);
        }
    }
}
