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
//! The protobuf messages are declared in [`proto`] with `prost`, the protobuf library the
//! TensorBoard writer uses too (`crate::report::tensorboard`): the fields this export writes,
//! with the names, types and field numbers of `onnx.proto` of the onnx 1.23.2 release (vendored
//! beside this file for reference). Repeated integers are written unpacked, as proto2 declares
//! them there.

use prost::Message;
use tch::{Device, Kind, Tensor};

use crate::{error::Result, model::Net};

/// ONNX's messages, as far as this export uses them (`onnx.proto`, package `onnx`).
mod proto {
    /// `ModelProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, optional, tag = "1")]
        pub ir_version: Option<i64>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
        #[prost(string, optional, tag = "2")]
        pub producer_name: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub producer_version: Option<String>,
        #[prost(string, optional, tag = "6")]
        pub doc_string: Option<String>,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        #[prost(message, repeated, tag = "14")]
        pub metadata_props: Vec<StringStringEntryProto>,
    }

    /// `OperatorSetIdProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, optional, tag = "1")]
        pub domain: Option<String>,
        #[prost(int64, optional, tag = "2")]
        pub version: Option<i64>,
    }

    /// `StringStringEntryProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringStringEntryProto {
        #[prost(string, optional, tag = "1")]
        pub key: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }

    /// `GraphProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    /// `NodeProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, optional, tag = "3")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub op_type: Option<String>,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
    }

    /// `AttributeProto` (its `type` is an `AttributeType`: [`ATTRIBUTE_INT`], [`ATTRIBUTE_INTS`]).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(int32, optional, tag = "20")]
        pub r#type: Option<i32>,
        #[prost(int64, optional, tag = "3")]
        pub i: Option<i64>,
        #[prost(int64, repeated, packed = "false", tag = "8")]
        pub ints: Vec<i64>,
    }

    /// `AttributeProto.AttributeType.INT`.
    pub const ATTRIBUTE_INT: i32 = 2;
    /// `AttributeProto.AttributeType.INTS`.
    pub const ATTRIBUTE_INTS: i32 = 7;
    /// `TensorProto.DataType.FLOAT`.
    pub const DATA_TYPE_FLOAT: i32 = 1;

    /// `TensorProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, packed = "false", tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, optional, tag = "2")]
        pub data_type: Option<i32>,
        #[prost(string, optional, tag = "8")]
        pub name: Option<String>,
        #[prost(bytes = "vec", optional, tag = "9")]
        pub raw_data: Option<Vec<u8>>,
    }

    /// `ValueInfoProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    /// `TypeProto` (only its `tensor_type`, field 1 of the `value` oneof).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TypeTensor>,
    }

    /// `TypeProto.Tensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeTensor {
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// `TensorShapeProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    /// `TensorShapeProto.Dimension`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(oneof = "DimensionValue", tags = "1, 2")]
        pub value: Option<DimensionValue>,
    }

    /// `TensorShapeProto.Dimension.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum DimensionValue {
        #[prost(int64, tag = "1")]
        DimValue(i64),
        #[prost(string, tag = "2")]
        DimParam(String),
    }
}

use proto::{
    AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, TypeTensor, ValueInfoProto, ATTRIBUTE_INT, ATTRIBUTE_INTS, DATA_TYPE_FLOAT,
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
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("tch-cifar10".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(DOC.into()),
        graph: Some(graph),
        metadata_props: vec![
            entry("classes", &serde_json::to_string(classes).expect("strings serialise to JSON")),
            entry("tch_cifar10_version", env!("CARGO_PKG_VERSION")),
        ],
    };
    Ok(model.encode_to_vec())
}

/// A float32 initializer holding `t`, little-endian.
fn initializer(name: &str, t: &Tensor) -> Result<TensorProto> {
    let t = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?;
    let values = Vec::<f32>::try_from(t.f_flatten(0, -1)?)?;
    Ok(TensorProto {
        name: Some(name.into()),
        dims: t.size(),
        data_type: Some(DATA_TYPE_FLOAT),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
    })
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(ATTRIBUTE_INTS),
        ints: values.to_vec(),
        i: None,
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(ATTRIBUTE_INT), i: Some(value), ints: Vec::new() }
}

/// A float32 tensor value; `None` dimensions are the [`BATCH`] parameter.
fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => DimensionValue::DimValue(*n),
                None => DimensionValue::DimParam(BATCH.into()),
            }),
        })
        .collect();
    let tensor = TypeTensor { elem_type: Some(DATA_TYPE_FLOAT), shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto { name: Some(name.into()), r#type: Some(TypeProto { tensor_type: Some(tensor) }) }
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto { key: Some(key.into()), value: Some(value.into()) }
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
        let model = ModelProto::decode(encode(&net, &classes).unwrap().as_slice()).unwrap();
        assert_eq!((model.ir_version(), model.opset_import[0].version()), (IR_VERSION, OPSET));
        assert_eq!(model.metadata_props[0].value(), r#"["a","b","c","d"]"#);
        let g = model.graph.as_ref().unwrap();
        let ops: Vec<&str> = g.node.iter().map(|n| n.op_type()).collect();
        let gemm = &g.node[7].attribute[0];
        assert_eq!((gemm.name(), gemm.r#type(), gemm.i()), ("transB", ATTRIBUTE_INT, 1));
        let conv = &g.node[0].attribute[0];
        assert_eq!((conv.name(), conv.r#type(), conv.ints.as_slice()), ("kernel_shape", ATTRIBUTE_INTS, &[5i64, 5][..]));
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
        let out = &g.output[0].r#type.as_ref().unwrap().tensor_type.as_ref().unwrap().shape.as_ref().unwrap().dim;
        assert_eq!(out[0].value, Some(DimensionValue::DimParam(BATCH.into())));
        assert_eq!(out[1].value, Some(DimensionValue::DimValue(4)));
    }
}
