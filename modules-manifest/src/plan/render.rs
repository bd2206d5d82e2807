//! The human-readable listing of a plan (`kmodinit plan`).

use std::fmt::Write as _;

use super::{Action, EdgeKind, Plan, Reason};
use crate::name::ModuleName;

/// A reason in a few words, for listings and messages.
pub(super) fn reason_text(r: &Reason) -> String {
    match r {
        Reason::Chain { chain, position } => format!("chain {chain} #{position}"),
        Reason::ChainAlias {
            chain,
            position,
            alias,
        } => format!("chain {chain} #{position} ({alias})"),
        Reason::Cmdline => "cmdline".to_owned(),
        Reason::DependencyOf { module } => format!("dep of {module}"),
        Reason::SoftdepOf { module, alias } => {
            if alias.as_str() == module.as_str() {
                format!("softdep of {module}")
            } else {
                format!("softdep of {module} ({alias})")
            }
        }
    }
}

impl Plan {
    /// A human-readable listing for `kmodinit plan`: a summary, the chains,
    /// one line per node (id, name, action or path, params, what it waits
    /// for, why it is there), then the notes.
    pub fn render_text(&self) -> String {
        let mut t = String::new();
        let inserts = self.module_files().count();
        let _ = writeln!(
            t,
            "plan: {} modules ({} to insert, {} satisfied), {} chains",
            self.nodes.len(),
            inserts,
            self.nodes.len() - inserts,
            self.chains.len()
        );
        for c in &self.chains {
            let names: Vec<&str> = c
                .nodes
                .iter()
                .map(|&i| self.nodes[i].name.as_str())
                .collect();
            let _ = writeln!(
                t,
                "chain {}{}: {}",
                c.name,
                if c.required { " (required)" } else { "" },
                names.join(" → ")
            );
        }
        let width = self
            .nodes
            .iter()
            .map(|n| n.name.as_str().len())
            .max()
            .unwrap_or(0);
        let idw = self.nodes.len().saturating_sub(1).to_string().len();
        for node in &self.nodes {
            let action = match &node.action {
                Action::Insert { path, .. } => path.clone(),
                Action::Builtin => "(builtin)".to_owned(),
                Action::AlreadyLoaded => "(already loaded)".to_owned(),
                Action::Blacklisted => "(blacklisted: not loaded)".to_owned(),
                Action::Skipped { option } => format!("(skipped: {option})"),
                Action::Unplannable { error } => format!("(cannot be planned: {error})"),
            };
            let after: Vec<String> = node
                .preds
                .iter()
                .map(|e| {
                    let name = self.nodes[e.from].name.as_str();
                    match e.kind {
                        EdgeKind::Dependency => name.to_owned(),
                        EdgeKind::Softdep => format!("{name} (softdep)"),
                        EdgeKind::Chain => format!("{name} (chain)"),
                    }
                })
                .collect();
            let mut why: Vec<String> = node.reasons.iter().map(reason_text).collect();
            if let Some(alt) = &node.alternative {
                let all: Vec<&str> = alt.providers.iter().map(ModuleName::as_str).collect();
                why.push(format!("one of {}: {}", alt.alias, all.join(" ")));
            }
            let _ = writeln!(
                t,
                "{:>idw$} {:<width$} {}{} params: {} after: {} why: {}",
                node.id,
                node.name.as_str(),
                if node.required { "* " } else { "  " },
                action,
                if node.params.is_empty() {
                    "-"
                } else {
                    &node.params
                },
                if after.is_empty() {
                    "-".to_owned()
                } else {
                    after.join(", ")
                },
                why.join(", ")
            );
        }
        for note in &self.notes {
            let _ = writeln!(t, "note: {note}");
        }
        t
    }
}
