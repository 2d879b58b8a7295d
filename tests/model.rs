//! The reference `Net`: PyTorch's parameter names and count, output shape, and initial weights
//! equal to `torch.manual_seed(s); Net()`.

use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_cifar10::{model::Net, rng::Mt19937};

/// A fresh `Net` drawn after `manual_seed(seed)`; returns the held generator lock too, so the
/// caller can keep drawing in PyTorch's order while tests run in parallel.
fn fresh_locked(seed: i64) -> (nn::VarStore, Net, std::sync::MutexGuard<'static, ()>) {
    let rng = tch_cifar10::rng::lock_global_rng();
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), 10);
    net.init_pytorch();
    (vs, net, rng)
}

fn fresh(seed: i64) -> (nn::VarStore, Net) {
    let (vs, net, _rng) = fresh_locked(seed);
    (vs, net)
}

#[test]
fn names_count_and_output_shape_match_pytorch() {
    let (vs, net) = fresh(0);
    let names: Vec<_> = net.parameters().iter().map(|(n, _)| *n).collect();
    let expected = [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight",
        "fc2.bias", "fc3.weight", "fc3.bias",
    ];
    assert_eq!(names, expected);
    let mut stored: Vec<_> = vs.variables().into_keys().collect();
    stored.sort();
    let mut sorted = expected.map(String::from).to_vec();
    sorted.sort();
    assert_eq!(stored, sorted, "the VarStore holds exactly PyTorch's state_dict keys");
    // sum(p.numel() for p in Net().parameters()) in PyTorch.
    let count: i64 = net.parameters().iter().map(|(_, p)| p.numel() as i64).sum();
    assert_eq!(count, 62_006);
    let logits = net.forward(&Tensor::zeros([7, 3, 32, 32], (Kind::Float, Device::Cpu)));
    assert_eq!(logits.size(), [7, 10]);
}

#[test]
fn initial_weights_are_within_pytorch_bounds_and_biases_are_drawn() {
    let (_vs, net) = fresh(3);
    for (name, p) in net.parameters() {
        let fan_in: i64 = if name.ends_with("weight") {
            p.size()[1..].iter().product()
        } else {
            let w = net.parameters().into_iter().find(|(n, _)| *n == name.replace("bias", "weight")).unwrap().1;
            w.size()[1..].iter().product()
        };
        let bound = 1.0 / (fan_in as f64).sqrt();
        let max = p.abs().max().double_value(&[]);
        // Not tch's default (weights sqrt(6) times wider, conv biases zero).
        assert!(max <= bound * (1.0 + 1e-6), "{name}: max |w| {max} above 1/sqrt(fan_in) = {bound}");
        assert!(max > 0.0, "{name} is all zero");
        if name.ends_with("weight") {
            // Drawn over the whole range: of at least 450 uniform draws the largest is within 1%
            // of the bound (a 0.99^450 ~ 1% chance otherwise; seed 3 is fixed, so no flakiness).
            assert!(max > 0.99 * bound, "{name}: max |w| {max} well below the bound {bound}");
        }
    }
}

#[test]
fn initial_weights_equal_pytorchs_for_the_same_seed() {
    let (_vs, net, rng) = fresh_locked(0);
    // From PyTorch 2.11.0: torch.manual_seed(0); [(n, p.double().sum().item()) for n, p in Net().named_parameters()]
    let pytorch = [
        ("conv1.weight", -0.7713325237418758),
        ("conv1.bias", 0.3512015901505947),
        ("conv2.weight", -1.6215906361758243),
        ("conv2.bias", -0.1091880677267909),
        ("fc1.weight", 4.268354132773993),
        ("fc1.bias", -0.19925363388028927),
        ("fc2.weight", -0.5789502093164174),
        ("fc2.bias", 0.41144116285431664),
        ("fc3.weight", 1.1894764686585404),
        ("fc3.bias", -0.0974443331360817),
    ];
    for ((name, p), (want_name, want_sum)) in net.parameters().into_iter().zip(pytorch) {
        assert_eq!(name, want_name);
        let sum = p.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
        assert!((sum - want_sum).abs() < 1e-10, "{name}: sum {sum} != PyTorch's {want_sum}");
    }
    // The DataLoader's first sampler seed and its randperm, drawn after Net() in the same
    // PyTorch session (base seed, then sampler seed; randperm(10) from a generator seeded with it).
    // libtorch's generator, continued in Rust from its state after Net() (as training does).
    let mut gen = Mt19937::from_libtorch().unwrap();
    let (_base_seed, sampler_seed) = (gen.draw_i64(), gen.draw_i64());
    let seeds = [sampler_seed];
    assert_eq!(seeds, [3_445_894_052_793_101_174]);
    drop(rng);
    let perm = Vec::<i64>::try_from(tch_cifar10::rng::epoch_permutation(seeds[0], 10)).unwrap();
    assert_eq!(perm, [4, 3, 2, 1, 5, 8, 6, 0, 7, 9]);
}
