//! weft's graph passes.
//!
//! Shape inference always runs (it is validation, not optimisation). The optional
//! passes run in [`PIPELINE`] order; each returns a log line per change it made, so
//! a fusion that does not fire is visible.

mod dce;
mod shapes;
mod tie_alias;

pub use dce::Dce;
pub use shapes::infer_shapes;
pub use tie_alias::TieAlias;

use weft_ir::Graph;

/// A graph rewrite that preserves meaning.
pub trait Pass: Sync {
    /// The name used in `--passes` and in the log.
    fn name(&self) -> &'static str;
    /// Rewrites the graph; one log line per change.
    fn run(&self, g: &mut Graph) -> Vec<String>;
}

/// The optional passes, in order: alias first so dead-code elimination drops what it frees.
pub const PIPELINE: &[&dyn Pass] = &[&TieAlias, &Dce];

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("shape error at '{node}' ({origin}): {message}")]
    Shape {
        node: String,
        origin: String,
        message: String,
    },
    #[error("unknown pass '{0}' in --passes (known: {known})", known = PIPELINE.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "))]
    UnknownPass(String),
}

/// Which optional passes run: `all`, `none`, a list (`tie-alias,dce`), or removals
/// from all (`-dce`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassSelection(Vec<&'static str>);

impl PassSelection {
    pub fn all() -> Self {
        PassSelection(PIPELINE.iter().map(|p| p.name()).collect())
    }

    pub fn none() -> Self {
        PassSelection(vec![])
    }

    pub fn parse(spec: &str) -> Result<Self, PassError> {
        let spec = spec.trim();
        match spec {
            "all" | "" => return Ok(Self::all()),
            "none" => return Ok(Self::none()),
            _ => {}
        }
        let find = |name: &str| {
            PIPELINE
                .iter()
                .map(|p| p.name())
                .find(|p| *p == name)
                .ok_or_else(|| PassError::UnknownPass(name.to_string()))
        };
        let items: Vec<&str> = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.iter().all(|s| s.starts_with('-')) {
            let off = items
                .iter()
                .map(|s| find(&s[1..]))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(PassSelection(
                Self::all()
                    .0
                    .into_iter()
                    .filter(|p| !off.contains(p))
                    .collect(),
            ))
        } else {
            Ok(PassSelection(
                items.iter().map(|s| find(s)).collect::<Result<_, _>>()?,
            ))
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(&name)
    }
}

/// Validates the graph, runs the selected passes in pipeline order and returns the log.
pub fn optimize(g: &mut Graph, selection: &PassSelection) -> Result<Vec<String>, PassError> {
    infer_shapes(g)?;
    let mut log = Vec::new();
    for pass in PIPELINE.iter().filter(|p| selection.contains(p.name())) {
        let lines = pass.run(g);
        log.push(format!("{}: {} change(s)", pass.name(), lines.len()));
        log.extend(lines.into_iter().map(|l| format!("  {l}")));
        infer_shapes(g)?;
    }
    Ok(log)
}
