//! The reference `Net` (a LeNet-5 variant) with PyTorch's parameter names and initialisation:
//!
//! ```python
//! class Net(nn.Module):
//!     def __init__(self):
//!         self.conv1 = nn.Conv2d(3, 6, 5);   self.pool = nn.MaxPool2d(2, 2)
//!         self.conv2 = nn.Conv2d(6, 16, 5)
//!         self.fc1 = nn.Linear(16 * 5 * 5, 120); self.fc2 = nn.Linear(120, 84); self.fc3 = nn.Linear(84, 10)
//!     def forward(self, x):
//!         x = self.pool(F.relu(self.conv1(x))); x = self.pool(F.relu(self.conv2(x)))
//!         x = torch.flatten(x, 1)
//!         x = F.relu(self.fc1(x)); x = F.relu(self.fc2(x)); return self.fc3(x)
//! ```
//!
//! PyTorch's `reset_parameters` draws every weight with `kaiming_uniform_(w, a=sqrt(5))` (bound
//! `sqrt(3) * gain / sqrt(fan_in)` with `gain = sqrt(2 / (1 + a^2))`, i.e. `1/sqrt(fan_in)`) and
//! every bias uniform in `+-1/sqrt(fan_in)`, in declaration order, weight before bias. tch's
//! defaults differ (wider weights, zero conv biases, linear bias drawn first), so [`Net::new`]
//! creates zeroed variables and [`Net::init_pytorch`] draws them with PyTorch's op and order.

use tch::{nn, nn::Module, Tensor};

/// Input classes of CIFAR-10.
pub const CIFAR10_CLASSES: i64 = 10;
/// Features after the convolutional stack: 16 channels x 5 x 5.
pub const FLAT_FEATURES: i64 = 16 * 5 * 5;

/// The reference network.
#[derive(Debug)]
pub struct Net {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
    fc3: nn::Linear,
}

impl Net {
    /// Creates the layers under `vs` (named `conv1.weight` ... `fc3.bias`) with zeroed values;
    /// call [`Net::init_pytorch`] to draw them. `classes` is the width of `fc3` (10 for CIFAR-10).
    pub fn new(vs: &nn::Path, classes: i64) -> Net {
        let zero = nn::Init::Const(0.);
        let conv = nn::ConvConfig { ws_init: zero, bs_init: zero, ..Default::default() };
        let lin = nn::LinearConfig { ws_init: zero, bs_init: Some(zero), bias: true };
        Net {
            conv1: nn::conv2d(vs / "conv1", 3, 6, 5, conv),
            conv2: nn::conv2d(vs / "conv2", 6, 16, 5, conv),
            fc1: nn::linear(vs / "fc1", FLAT_FEATURES, 120, lin),
            fc2: nn::linear(vs / "fc2", 120, 84, lin),
            fc3: nn::linear(vs / "fc3", 84, classes, lin),
        }
    }

    /// The parameters in PyTorch's `named_parameters()` order.
    pub fn parameters(&self) -> [(&'static str, &Tensor); 10] {
        fn bias(b: &Option<Tensor>) -> &Tensor {
            b.as_ref().expect("every layer of Net is built with a bias")
        }
        [
            ("conv1.weight", &self.conv1.ws),
            ("conv1.bias", bias(&self.conv1.bs)),
            ("conv2.weight", &self.conv2.ws),
            ("conv2.bias", bias(&self.conv2.bs)),
            ("fc1.weight", &self.fc1.ws),
            ("fc1.bias", bias(&self.fc1.bs)),
            ("fc2.weight", &self.fc2.ws),
            ("fc2.bias", bias(&self.fc2.bs)),
            ("fc3.weight", &self.fc3.ws),
            ("fc3.bias", bias(&self.fc3.bs)),
        ]
    }

    /// Draws every parameter from the global generator exactly as `Net()` does in PyTorch:
    /// in declaration order, each with `uniform_(-bound, bound)` on its float32 CPU tensor.
    /// After `tch::manual_seed(s)` the values equal those of `torch.manual_seed(s); Net()`.
    pub fn init_pytorch(&self) {
        // torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5)), computed in f64 as Python does.
        let a = 5f64.sqrt();
        let gain = (2.0 / (1.0 + a.powi(2))).sqrt();
        tch::no_grad(|| {
            for pair in self.parameters().chunks(2) {
                let [(_, w), (_, b)] = pair else { unreachable!("parameters come in weight/bias pairs") };
                let fan_in: i64 = w.size()[1..].iter().product();
                let w_bound = 3f64.sqrt() * (gain / (fan_in as f64).sqrt());
                let b_bound = 1.0 / (fan_in as f64).sqrt();
                let _ = w.shallow_clone().uniform_(-w_bound, w_bound);
                let _ = b.shallow_clone().uniform_(-b_bound, b_bound);
            }
        });
    }
}

impl Net {
    /// The name of the first parameter holding a NaN or an infinity, if any (one read of 62,006
    /// values from the device).
    pub fn first_non_finite(&self) -> Option<&'static str> {
        let flags: Vec<bool> = self.parameters().iter().map(|(_, p)| p.isfinite().all().int64_value(&[]) != 0).collect();
        self.parameters().iter().zip(flags).find(|(_, ok)| !ok).map(|((n, _), _)| *n)
    }

    /// The same function as [`Module::forward`] with ReLU applied after each max-pool instead of
    /// before: `maxpool(relu(x)) == relu(maxpool(x))` exactly, value and gradient, since ReLU is
    /// monotonic (the pooled maximum is the same element either way, and ReLU passes or zeroes
    /// its gradient alike), but ReLU then runs on a quarter of the elements, in place.
    /// `[B, 3, 32, 32]` float (any memory layout) -> `[B, classes]` logits.
    pub fn forward_pool_first(&self, xs: &Tensor) -> Tensor {
        let xs = xs.apply(&self.conv1).max_pool2d_default(2).relu_(); // [B, 6, 14, 14]
        let xs = xs.apply(&self.conv2).max_pool2d_default(2).relu_(); // [B, 16, 5, 5]
        let xs = xs.flatten(1, -1).apply(&self.fc1).relu_(); // [B, 120]
        xs.apply(&self.fc2).relu_().apply(&self.fc3) // [B, 84] -> [B, classes]
    }
}

impl Module for Net {
    /// `[B, 3, 32, 32]` float -> `[B, classes]` logits.
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.conv1).relu().max_pool2d_default(2) // [B, 6, 14, 14]
            .apply(&self.conv2).relu().max_pool2d_default(2) // [B, 16, 5, 5]
            .flatten(1, -1) // [B, 400]
            .apply(&self.fc1).relu() // [B, 120]
            .apply(&self.fc2).relu() // [B, 84]
            .apply(&self.fc3) // [B, classes]
    }
}
