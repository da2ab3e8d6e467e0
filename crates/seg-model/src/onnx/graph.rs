//! A small builder over ONNX's protobuf messages (the `onnx-protobuf` crate): named values,
//! initialisers and nodes, in the order they are added.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
use onnx_protobuf::type_proto::{self, Value};
use onnx_protobuf::{
    AttributeProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// One dimension of a graph input or output: fixed, or named and dynamic.
#[derive(Debug, Clone)]
pub(super) enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A dynamic size, named (`batch`, `height`, `width`).
    Named(&'static str),
}

/// The nodes and initialisers of a graph being built.
#[derive(Default)]
pub(super) struct Graph {
    pub(super) nodes: Vec<NodeProto>,
    pub(super) initializers: Vec<TensorProto>,
    counter: usize,
}

impl Graph {
    /// A fresh value name starting with `prefix`.
    fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}", self.counter)
    }

    /// A float initialiser of shape `dims` holding `data` (row-major).
    pub(super) fn floats(&mut self, prefix: &str, dims: &[usize], data: Vec<f32>) -> String {
        let name = self.fresh(prefix);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::FLOAT as i32,
            float_data: data,
            ..TensorProto::default()
        });
        name
    }

    /// An int64 initialiser of shape `[data.len()]`.
    pub(super) fn ints(&mut self, prefix: &str, data: &[i64]) -> String {
        let name = self.fresh(prefix);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![data.len() as i64],
            data_type: DataType::INT64 as i32,
            int64_data: data.to_vec(),
            ..TensorProto::default()
        });
        name
    }

    /// Adds an `op` node reading `inputs`, returning the name of its one output.
    pub(super) fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let output = self.fresh(&op.to_ascii_lowercase());
        self.node_to(op, inputs, attrs, &output);
        output
    }

    /// Adds an `op` node reading `inputs` and writing the value named `output`.
    pub(super) fn node_to(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        output: &str,
    ) {
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            name,
            op_type: op.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute: attrs,
            ..NodeProto::default()
        });
    }
}

/// An integer attribute.
pub(super) fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INT.into(),
        i: value,
        ..AttributeProto::default()
    }
}

/// An integer-list attribute.
pub(super) fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INTS.into(),
        ints: values.to_vec(),
        ..AttributeProto::default()
    }
}

/// A float attribute.
pub(super) fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::FLOAT.into(),
        f: value,
        ..AttributeProto::default()
    }
}

/// A string attribute.
pub(super) fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::STRING.into(),
        s: value.as_bytes().to_vec(),
        ..AttributeProto::default()
    }
}

/// A graph input or output: a tensor of `elem` with `dims`.
pub(super) fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = |d: &Dim| Dimension {
        value: Some(match d {
            Dim::Fixed(n) => dimension::Value::DimValue(*n),
            Dim::Named(p) => dimension::Value::DimParam((*p).to_string()),
        }),
        ..Dimension::default()
    };
    let tensor = type_proto::Tensor {
        elem_type: elem as i32,
        shape: Some(TensorShapeProto {
            dim: dims.iter().map(dim).collect(),
            ..TensorShapeProto::default()
        })
        .into(),
        ..type_proto::Tensor::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(Value::TensorType(tensor)),
            ..TypeProto::default()
        })
        .into(),
        ..ValueInfoProto::default()
    }
}
