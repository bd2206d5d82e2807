//! The longest dependency path under the measured per-module times.

use super::*;

/// The longest path through the plan's edges when each module costs its
/// measured kernel-call time: what an unlimited pool could have achieved.
pub(super) fn critical_path(graph: &Graph, modules: &[ModuleReport]) -> (f64, Vec<usize>) {
    let n = modules.len();
    let mut finish = vec![0.0f64; n];
    let mut via: Vec<Option<usize>> = vec![None; n];
    for i in 0..n {
        let mut best = 0.0f64;
        for &(p, _) in &graph.preds[i] {
            if finish[p] > best || (via[i].is_none() && finish[p] >= best && finish[p] > 0.0) {
                best = finish[p];
                via[i] = Some(p);
            }
        }
        finish[i] = best + modules[i].duration();
    }
    let Some(mut last) = (0..n).max_by(|&a, &b| finish[a].total_cmp(&finish[b]).then(b.cmp(&a)))
    else {
        return (0.0, Vec::new());
    };
    let cost = finish[last];
    if cost <= 0.0 {
        return (0.0, Vec::new());
    }
    let mut path = vec![last];
    while let Some(p) = via[last] {
        path.push(p);
        last = p;
    }
    path.reverse();
    (cost, path)
}
