//! weft's intermediate representation.
//!
//! Invariant: this crate knows no model family, no file format and no backend.
//! Families expand into a [`Graph`], passes rewrite it, and a [`Plan`] (the graph in
//! execution order, serialisable) is what backends lower and run.

pub mod alloc;
mod dtype;
mod graph;
mod meta;
mod plan;
mod weights;

pub use dtype::{ggml_type_name, DType};
pub use graph::{
    Dim, Ew, GluAct, Graph, Node, NodeId, Op, RopeLayout, RopeParams, RopeScaling, Sym,
};
pub use meta::{Expect, MetaValue, PackedArray, StrList, StrListBuilder};
pub use plan::{KvLayer, ModelStamp, Plan, Step, PLAN_FORMAT_VERSION};
pub use weights::{ByteSource, WeightProvider, WeightView};
