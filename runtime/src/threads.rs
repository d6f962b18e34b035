//! The compute threads: one global pool, sized once per process.

use crate::RuntimeError;

/// Physical cores of this machine (hyper-threads share a core's units, so the
/// matmuls gain nothing from them); the logical count where the topology is unknown.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let (mut cores, mut physical) = (std::collections::BTreeSet::new(), None);
    for line in info.lines() {
        let mut kv = line.splitn(2, ':').map(str::trim);
        match (kv.next(), kv.next()) {
            (Some("physical id"), Some(v)) => physical = Some(v.to_string()),
            (Some("core id"), Some(v)) => {
                cores.insert((physical.clone(), v.to_string()));
            }
            _ => {}
        }
    }
    match cores.len() {
        0 => logical,
        n => n.min(logical),
    }
}

/// Sizes the compute pool: `threads` workers, or one per physical core. Call it once,
/// before any work; returns the size chosen.
pub fn set_threads(threads: Option<usize>) -> Result<usize, RuntimeError> {
    let n = match threads {
        Some(0) => return Err(RuntimeError::Threads("--threads must be at least 1".into())),
        Some(n) => n,
        None => physical_cores(),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| RuntimeError::Threads(e.to_string()))?;
    Ok(n)
}
