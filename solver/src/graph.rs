//! The lowered build: a `petgraph` DAG of [`Vertex`]es (edges point from an input to the
//! vertex reading it, weighted by the input's position) and, per lowered stage, its root
//! vertex and final image config.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use rbuild_parser::error::Location;

use crate::config::Image;
use crate::op::{Op, Platform, canonical_json};

/// A vertex id in a [`BuildGraph`].
pub type VertexId = NodeIndex;

/// One step of the build.
#[derive(Debug, Clone)]
pub struct Vertex {
    pub op: Op,
    /// The progress name, BuildKit style: `[build 3/5] RUN make`, `[internal] load build context`.
    pub name: String,
    /// The stage the step belongs to (its name, or `stage-N`).
    pub stage: Option<String>,
    /// The Dockerfile line it comes from.
    pub location: Option<Location>,
    pub platform: Platform,
    /// `--no-cache` / `--no-cache-filter`: run even when the cache has the key.
    pub ignore_cache: bool,
    /// The ARG values in scope (for `--explain`).
    pub build_args: BTreeMap<String, String>,
}

/// A lowered stage.
#[derive(Debug, Clone)]
pub struct StageResult {
    /// Position in the Dockerfile.
    pub index: usize,
    /// `AS` name, or `stage-N`.
    pub name: String,
    /// Its last vertex; `None` for a stage that is empty scratch.
    pub root: Option<VertexId>,
    /// The config and history the stage's image gets.
    pub image: Image,
    /// The base image (`reference@digest`) when the stage starts from one.
    pub base_image: Option<BaseImage>,
}

/// A base image a stage started from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    pub reference: String,
    pub digest: String,
}

/// The op DAG of a build.
#[derive(Debug, Clone, Default)]
pub struct BuildGraph {
    pub(crate) graph: DiGraph<Vertex, usize>,
    dedup: HashMap<String, VertexId>,
    /// The lowered stages, in Dockerfile order.
    pub stages: Vec<StageResult>,
    /// Index into `stages` of the target.
    pub target: usize,
}

impl BuildGraph {
    /// Adds a vertex reading `inputs` (in order). An identical vertex (same op, platform
    /// and inputs) is reused, as BuildKit merges identical LLB ops.
    pub(crate) fn add(&mut self, vertex: Vertex, inputs: &[VertexId]) -> VertexId {
        let identity = format!(
            "{}|{}|{:?}|{}",
            canonical_json(&vertex.op).unwrap_or_default(),
            vertex.platform,
            inputs,
            vertex.ignore_cache
        );
        if let Some(&id) = self.dedup.get(&identity) {
            return id;
        }
        let id = self.graph.add_node(vertex);
        for (i, input) in inputs.iter().enumerate() {
            self.graph.add_edge(*input, id, i);
        }
        self.dedup.insert(identity, id);
        id
    }

    pub fn vertex(&self, id: VertexId) -> &Vertex {
        &self.graph[id]
    }

    /// Every vertex id, in insertion order (inputs always come before their readers).
    pub fn vertices(&self) -> impl Iterator<Item = VertexId> + '_ {
        self.graph.node_indices()
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// The inputs of `id`, in op order.
    pub fn inputs(&self, id: VertexId) -> Vec<VertexId> {
        let mut edges: Vec<(usize, VertexId)> = self
            .graph
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        edges.sort();
        edges.into_iter().map(|(_, v)| v).collect()
    }

    /// The target stage.
    pub fn target_stage(&self) -> Option<&StageResult> {
        self.stages.get(self.target)
    }

    /// The stage named `name` (or `stage-N`), if it was lowered.
    pub fn stage(&self, name: &str) -> Option<&StageResult> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The petgraph graph, read-only.
    pub fn graph(&self) -> &DiGraph<Vertex, usize> {
        &self.graph
    }

    /// A stable text dump: one block per vertex with its name, inputs and op JSON (the
    /// golden `expected-graph.txt` files).
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for id in self.vertices() {
            let v = self.vertex(id);
            let inputs: Vec<String> = self
                .inputs(id)
                .iter()
                .map(|i| format!("#{}", i.index()))
                .collect();
            let _ = writeln!(out, "#{} {}", id.index(), v.name);
            if let Some(l) = &v.location {
                let _ = writeln!(out, "  at {}:{}", l.span.start.line, l.span.start.column);
            }
            if !inputs.is_empty() {
                let _ = writeln!(out, "  inputs: {}", inputs.join(" "));
            }
            if v.ignore_cache {
                let _ = writeln!(out, "  ignore-cache");
            }
            let _ = writeln!(out, "  platform: {}", v.platform);
            let _ = writeln!(out, "  {}", canonical_json(&v.op).unwrap_or_default());
        }
        for s in &self.stages {
            let root = s
                .root
                .map_or("scratch".to_string(), |r| format!("#{}", r.index()));
            let marker = if self.stages.get(self.target).map(|t| t.index) == Some(s.index) {
                " (target)"
            } else {
                ""
            };
            let _ = writeln!(out, "stage {} {}: {root}{marker}", s.index, s.name);
        }
        out
    }
}
