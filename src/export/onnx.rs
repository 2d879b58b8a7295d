//! ONNX export: `Net` as an [ONNX](https://onnx.ai/onnx/repo-docs/IR.html) model, the graph a
//! `torch.onnx.export` of the PyTorch `Net` gives, for onnxruntime and other ONNX runtimes.
//!
//! * IR version [`IR_VERSION`], default-domain opset [`OPSET`] (onnxruntime 1.13 and later);
//! * input [`INPUT`]: float32 `[batch, 3, 32, 32]`, normalised as in training (see
//!   [`crate::export`]), its first dimension the parameter [`BATCH`], so any batch size runs;
//! * output [`OUTPUT`]: float32 `[batch, classes]`;
//! * nodes `Conv(conv1) -> Relu -> MaxPool(2, 2) -> Conv(conv2) -> Relu -> MaxPool(2, 2) ->
//!   Flatten(axis 1) -> Gemm(fc1, transB) -> Relu -> Gemm(fc2, transB) -> Relu -> Gemm(fc3, transB)`,
//!   the operators PyTorch's `Conv2d`, `F.relu`, `MaxPool2d`, `torch.flatten(x, 1)` and `Linear`
//!   export to (`Gemm` with `transB = 1` computes `x @ W.T + b` with PyTorch's `[out, in]` `W`);
//! * the weights as initializers named as PyTorch names them (`conv1.weight` ... `fc3.bias`),
//!   float32, little-endian `raw_data`;
//! * `metadata_props`: `classes`, the class names as a JSON array in label order (as in the
//!   model file), and `tch_cifar10_version`.
//!
//! The protobuf messages are generated at build time (see `build.rs`) from `onnx.proto` of the
//! onnx 1.23.2 release, vendored beside this file, by rust-protobuf.

use protobuf::Message;
use tch::{Device, Kind, Tensor};

use crate::{error::Result, model::Net};

mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx_proto/mod.rs"));
}

use proto::onnx::{
    attribute_proto::AttributeType,
    tensor_proto::DataType,
    tensor_shape_proto::{dimension, Dimension},
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// Operator set of the default ONNX domain (ONNX 1.12, 2022).
pub const OPSET: i64 = 17;
/// IR version that goes with [`OPSET`].
pub const IR_VERSION: i64 = 8;
/// Name of the graph input.
pub const INPUT: &str = "input";
/// Name of the graph output.
pub const OUTPUT: &str = "logits";
/// Name of the free batch dimension of [`INPUT`] and [`OUTPUT`].
pub const BATCH: &str = "batch";

/// `model.doc_string`: what goes in and what comes out.
const DOC: &str = "The PyTorch CIFAR-10 tutorial's Net (LeNet-5 variant), exported by tch-cifar10. \
    Input `input`: float32 [batch, 3, 32, 32], RGB, normalised as in training: (x / 255 - 0.5) / 0.5 \
    for bytes x (ToTensor + Normalize(0.5, 0.5)). Output `logits`: float32 [batch, classes], before \
    softmax; the class names are metadata_props[\"classes\"] (a JSON array, index = label).";

/// The ONNX model of `net` with `classes` as metadata, serialised.
///
/// # Errors
/// [`crate::Error::Torch`] when a parameter cannot be copied to the CPU.
pub(crate) fn encode(net: &Net, classes: &[String]) -> Result<Vec<u8>> {
    let params = net.parameters();
    let initializer = params.iter().map(|&(name, t)| initializer(name, t)).collect::<Result<Vec<_>>>()?;
    let kernel = |name: &str| -> Vec<i64> {
        let (_, w) = params.iter().find(|(n, _)| *n == name).expect("Net has this parameter");
        w.size()[2..].to_vec()
    };
    let classes_len = params[9].1.size()[0];

    let conv = |layer: &str, x: &str, y: &str| {
        let k = kernel(&format!("{layer}.weight"));
        node("Conv", layer, &[x, &format!("{layer}.weight"), &format!("{layer}.bias")], y, vec![
            ints("kernel_shape", &k),
            ints("strides", &[1, 1]),
            ints("pads", &[0, 0, 0, 0]),
            ints("dilations", &[1, 1]),
            int("group", 1),
        ])
    };
    let gemm = |layer: &str, x: &str, y: &str| {
        node("Gemm", layer, &[x, &format!("{layer}.weight"), &format!("{layer}.bias")], y, vec![int("transB", 1)])
    };
    let relu = |name: &str, x: &str| node("Relu", name, &[x], name, vec![]);
    let pool = |name: &str, x: &str| {
        node("MaxPool", name, &[x], name, vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])])
    };
    let nodes = vec![
        conv("conv1", INPUT, "conv1_out"),
        relu("relu1", "conv1_out"),
        pool("pool1", "relu1"),
        conv("conv2", "pool1", "conv2_out"),
        relu("relu2", "conv2_out"),
        pool("pool2", "relu2"),
        node("Flatten", "flatten", &["pool2"], "flatten", vec![int("axis", 1)]),
        gemm("fc1", "flatten", "fc1_out"),
        relu("relu3", "fc1_out"),
        gemm("fc2", "relu3", "fc2_out"),
        relu("relu4", "fc2_out"),
        gemm("fc3", "relu4", OUTPUT),
    ];

    let graph = GraphProto {
        name: Some("Net".into()),
        node: nodes,
        initializer,
        input: vec![value_info(INPUT, &[None, Some(3), Some(32), Some(32)])],
        output: vec![value_info(OUTPUT, &[None, Some(classes_len)])],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET), ..Default::default() }],
        producer_name: Some("tch-cifar10".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(DOC.into()),
        graph: Some(graph).into(),
        metadata_props: vec![
            entry("classes", &serde_json::to_string(classes).expect("strings serialise to JSON")),
            entry("tch_cifar10_version", env!("CARGO_PKG_VERSION")),
        ],
        ..Default::default()
    };
    Ok(model.write_to_bytes().expect("a model of a few hundred KB serialises"))
}

/// A float32 initializer holding `t`, little-endian.
fn initializer(name: &str, t: &Tensor) -> Result<TensorProto> {
    let t = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?;
    let values = Vec::<f32>::try_from(t.f_flatten(0, -1)?)?;
    Ok(TensorProto {
        name: Some(name.into()),
        dims: t.size(),
        data_type: Some(DataType::FLOAT as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    })
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        type_: Some(AttributeType::INTS.into()),
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), type_: Some(AttributeType::INT.into()), i: Some(value), ..Default::default() }
}

/// A float32 tensor value; `None` dimensions are the [`BATCH`] parameter.
fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => dimension::Value::DimValue(*n),
                None => dimension::Value::DimParam(BATCH.into()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: Some(DataType::FLOAT as i32),
        shape: Some(TensorShapeProto { dim, ..Default::default() }).into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: Some(name.into()),
        type_: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }).into(),
        ..Default::default()
    }
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto { key: Some(key.into()), value: Some(value.into()), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use tch::nn;

    use super::*;

    #[test]
    fn the_model_reads_back_with_the_graph_and_weights_written() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), 4);
        tch::no_grad(|| {
            for (i, (_, p)) in net.parameters().iter().enumerate() {
                let _ = p.shallow_clone().fill_(i as f64 + 0.5);
            }
        });
        let classes = ["a", "b", "c", "d"].map(String::from);
        let model = ModelProto::parse_from_bytes(&encode(&net, &classes).unwrap()).unwrap();
        assert_eq!((model.ir_version(), model.opset_import[0].version()), (IR_VERSION, OPSET));
        assert_eq!(model.metadata_props[0].value(), r#"["a","b","c","d"]"#);
        let g = model.graph.as_ref().unwrap();
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type()).collect();
        assert_eq!(ops, ["Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Relu", "Gemm", "Relu", "Gemm"]);
        // Each node reads what the one before wrote; the last writes the output.
        for pair in g.node.windows(2) {
            assert_eq!(pair[1].input[0], pair[0].output[0]);
        }
        assert_eq!((g.node[0].input[0].as_str(), g.node[11].output[0].as_str()), (INPUT, OUTPUT));
        let names: Vec<&str> = g.initializer.iter().map(|t| t.name()).collect();
        assert_eq!(names, net.parameters().map(|(n, _)| n));
        let fc3_bias = &g.initializer[9];
        assert_eq!(fc3_bias.dims, [4]);
        assert_eq!(fc3_bias.raw_data(), 9.5f32.to_le_bytes().repeat(4));
        let out = &g.output[0].type_.tensor_type().shape.dim;
        assert_eq!((out[0].dim_param(), out[1].dim_value()), (BATCH, 4));
    }
}
