//! Node order and cycles: Kahn's algorithm with the required-first key, the
//! cycle that blocks it named link by link, and at boot the cycles broken
//! (their modules made unplannable) so the graph is a DAG.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use super::builder::Builder;
use super::{CycleLink, EdgeKind, PlanError};

impl Builder<'_> {
    /// Kahn's algorithm taking the smallest discovery id among ready nodes;
    /// on a cycle, an error naming it.
    pub(super) fn topo_order(&self, needed: &[BTreeSet<usize>]) -> Result<Vec<usize>, PlanError> {
        let n = self.drafts.len();
        let chains = &self.input.manifest.chains;
        // (not required, first chain needing it, discovery id): smallest first.
        let key = |id: usize| -> (bool, usize, usize) {
            let required = (0..chains.len()).any(|c| self.required[c] && needed[c].contains(&id));
            let first = (0..chains.len())
                .find(|&c| needed[c].contains(&id))
                .unwrap_or(usize::MAX);
            (!required, first, id)
        };
        let mut indegree: Vec<usize> = self.drafts.iter().map(|d| d.preds.len()).collect();
        let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (id, d) in self.drafts.iter().enumerate() {
            for &p in d.preds.keys() {
                succs[p].push(id);
            }
        }
        let mut ready: BinaryHeap<Reverse<(bool, usize, usize)>> = (0..n)
            .filter(|&i| indegree[i] == 0)
            .map(|i| Reverse(key(i)))
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse((_, _, id))) = ready.pop() {
            order.push(id);
            for &s in &succs[id] {
                indegree[s] -= 1;
                if indegree[s] == 0 {
                    ready.push(Reverse(key(s)));
                }
            }
        }
        if order.len() == n {
            return Ok(order);
        }
        Err(self.cycle_error(|i| indegree[i] > 0))
    }

    /// A cycle among the nodes `in_set` accepts, found by walking
    /// predecessors from the first such node. Every node of the set must
    /// have a predecessor in the set (true of the nodes Kahn leaves, and of
    /// a strongly connected component), so the walk must revisit a node.
    pub(super) fn cycle_error(&self, in_set: impl Fn(usize) -> bool) -> PlanError {
        let unknown = PlanError::Cycle { links: Vec::new() };
        let Some(start) = (0..self.drafts.len()).find(|&i| in_set(i)) else {
            return unknown;
        };
        let mut walk = vec![start];
        let mut pos: HashMap<usize, usize> = HashMap::from([(start, 0)]);
        let mut cur = start;
        let cycle = loop {
            let Some(&p) = self.drafts[cur].preds.keys().find(|&&p| in_set(p)) else {
                return unknown;
            };
            if let Some(&at) = pos.get(&p) {
                // walk[at..] goes backwards along edges; reverse it so each
                // node is followed by one that must load after it.
                let mut c: Vec<usize> = walk[at..].to_vec();
                c.reverse();
                break c;
            }
            pos.insert(p, walk.len());
            walk.push(p);
            cur = p;
        };
        let links = (0..cycle.len())
            .map(|w| {
                let (from, to) = (cycle[w], cycle[(w + 1) % cycle.len()]);
                // An edge without a recorded kind cannot happen; it reads as
                // a dependency, as it always did.
                let kind = self.drafts[to]
                    .preds
                    .get(&from)
                    .copied()
                    .unwrap_or(EdgeKind::Dependency);
                CycleLink {
                    from: self.drafts[from].name.clone(),
                    to: self.drafts[to].name.clone(),
                    kind,
                    chain: match kind {
                        EdgeKind::Chain => self.chain_edges.get(&(from, to)).cloned(),
                        _ => None,
                    },
                }
            })
            .collect();
        PlanError::Cycle { links }
    }

    /// [`Mode::AtBoot`]: every module of a cycle (a strongly connected
    /// component with an edge inside it) becomes unplannable with that
    /// cycle's error, and the edges inside the component are dropped, so
    /// the graph is a DAG while edges into and out of the cycle stay (what
    /// needs a module of the cycle is blocked, not lost).
    pub(super) fn break_cycles(&mut self) -> Result<(), PlanError> {
        let n = self.drafts.len();
        let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (id, d) in self.drafts.iter().enumerate() {
            for &p in d.preds.keys() {
                succs[p].push(id);
            }
        }
        // Kosaraju, iteratively. Pass 1: finish order of a DFS along succs.
        let mut seen = vec![false; n];
        let mut finished = Vec::with_capacity(n);
        for root in 0..n {
            if seen[root] {
                continue;
            }
            seen[root] = true;
            let mut stack = vec![(root, 0usize)];
            while let Some((v, i)) = stack.pop() {
                if let Some(&w) = succs[v].get(i) {
                    stack.push((v, i + 1));
                    if !seen[w] {
                        seen[w] = true;
                        stack.push((w, 0));
                    }
                } else {
                    finished.push(v);
                }
            }
        }
        // Pass 2: along preds, latest finished first; each tree is one
        // component.
        let mut comp = vec![usize::MAX; n];
        let mut comps: Vec<Vec<usize>> = Vec::new();
        for &root in finished.iter().rev() {
            if comp[root] != usize::MAX {
                continue;
            }
            let c = comps.len();
            comp[root] = c;
            let mut members = vec![root];
            let mut stack = vec![root];
            while let Some(v) = stack.pop() {
                for &p in self.drafts[v].preds.keys() {
                    if comp[p] == usize::MAX {
                        comp[p] = c;
                        members.push(p);
                        stack.push(p);
                    }
                }
            }
            comps.push(members);
        }
        for (c, mut members) in comps.into_iter().enumerate() {
            let cyclic =
                members.len() > 1 || self.drafts[members[0]].preds.contains_key(&members[0]);
            if !cyclic {
                continue;
            }
            members.sort_unstable();
            let error = self.cycle_error(|i| comp[i] == c);
            for &m in &members {
                let name = self.drafts[m].name.clone();
                self.refuse(&name, error.clone())?;
                self.drafts[m].preds.retain(|p, _| comp[*p] != c);
            }
        }
        Ok(())
    }
}
