//! `train::Sgd` computes exactly what libtorch's SGD computes, and its saved momentum buffers
//! restore a run exactly.

use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};
use tch_cifar10::{model::Net, train::Sgd};

fn net(seed: i64) -> (nn::VarStore, Net) {
    let _rng = tch_cifar10::rng::lock_global_rng();
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), 10);
    net.init_pytorch();
    (vs, net)
}

/// Fixed batches: normal inputs and labels drawn from a seeded generator.
fn batches(n: usize) -> Vec<(Tensor, Tensor)> {
    let _rng = tch_cifar10::rng::lock_global_rng();
    tch::manual_seed(99);
    (0..n)
        .map(|_| (Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu)), Tensor::randint(10, [8], (Kind::Int64, Device::Cpu))))
        .collect()
}

fn loss(net: &Net, (xs, ys): &(Tensor, Tensor)) -> Tensor {
    net.forward(xs).cross_entropy_for_logits(ys)
}

fn params(net: &Net) -> Vec<Tensor> {
    net.parameters().iter().map(|(_, p)| p.detach().copy()).collect()
}

fn bits_equal(a: &[Tensor], b: &[Tensor]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.equal(y))
}

#[test]
fn matches_libtorch_sgd_bit_for_bit() {
    let data = batches(6);
    let (vs_a, a) = net(4);
    let mut opt_a = nn::sgd(0.9, 0.0, 0.0, false).build(&vs_a, 0.05).unwrap();
    let (vs_b, b) = net(4);
    let mut opt_b = Sgd::new(&vs_b, &b.parameters(), 0.05, 0.9).unwrap();
    for (i, batch) in data.iter().enumerate() {
        if i == 3 {
            opt_a.set_lr(0.005);
            opt_b.set_lr(0.005);
        }
        opt_a.backward_step(&loss(&a, batch));
        opt_b.backward_step(&loss(&b, batch));
    }
    assert!(bits_equal(&params(&a), &params(&b)));
    assert!(!bits_equal(&params(&a), &params(&net(4).1)), "the steps changed the weights");
}

#[test]
fn restored_momentum_continues_exactly() {
    let data = batches(6);
    // Uninterrupted: six steps.
    let (vs, full) = net(5);
    let mut opt = Sgd::new(&vs, &full.parameters(), 0.05, 0.9).unwrap();
    data.iter().for_each(|b| opt.backward_step(&loss(&full, b)));

    // Three steps, then the weights and buffers are copied into a fresh model and optimizer.
    let (vs1, first) = net(5);
    let mut opt1 = Sgd::new(&vs1, &first.parameters(), 0.05, 0.9).unwrap();
    data[..3].iter().for_each(|b| opt1.backward_step(&loss(&first, b)));
    let saved_w = params(&first);
    let saved_m: Vec<(String, Tensor)> = opt1.momentum_buffers().into_iter().map(|(n, t)| (n, t.copy())).collect();
    assert_eq!(saved_m.len(), 10);

    let (vs2, resumed) = net(77); // different initial weights, overwritten below
    tch::no_grad(|| {
        for ((_, p), w) in resumed.parameters().iter().zip(&saved_w) {
            p.shallow_clone().copy_(w);
        }
    });
    let mut opt2 = Sgd::new(&vs2, &resumed.parameters(), 0.05, 0.9).unwrap();
    opt2.restore_momentum(&saved_m, 0.05).unwrap();
    assert!(bits_equal(&params(&resumed), &saved_w), "restoring the buffers leaves the weights alone");
    data[3..].iter().for_each(|b| opt2.backward_step(&loss(&resumed, b)));
    assert!(bits_equal(&params(&full), &params(&resumed)), "resumed run equals the uninterrupted one");

    // Without the buffers the continuation differs: the check above can fail.
    let (vs3, plain) = net(77);
    tch::no_grad(|| {
        for ((_, p), w) in plain.parameters().iter().zip(&saved_w) {
            p.shallow_clone().copy_(w);
        }
    });
    let mut opt3 = Sgd::new(&vs3, &plain.parameters(), 0.05, 0.9).unwrap();
    data[3..].iter().for_each(|b| opt3.backward_step(&loss(&plain, b)));
    assert!(!bits_equal(&params(&full), &params(&plain)));
}
