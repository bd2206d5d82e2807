//! The pure core of kmodinit: everything between the bytes PID 1 reads and the
//! load plan its loader executes. No syscalls live here (the only I/O is the
//! optional [`DepIndex::load`] convenience that reads depmod files, its
//! image-builder sibling [`depmod::prune()`], and
//! [`release::newest_installed`], which lists a directory for host tools and
//! tests), so every rule of the contract is tested on the host.
//!
//! Data flows one way:
//! [`Manifest`] + [`DepIndex`] + [`KernelCmdline`] → [`plan()`] (strict, for
//! the image builder) or [`plan_at_boot()`] (a module that cannot be planned
//! fails alone) → [`Plan`].

pub mod cmdline;
pub mod compiled;
pub mod depmod;
pub mod dm;
pub mod firmware;
pub mod manifest;
pub mod measure;
pub mod modalias;
pub mod modinfo;
pub mod modprobe_d;
pub mod name;
pub mod plan;
pub mod release;

pub use cmdline::{CmdlineName, KernelCmdline};
pub use compiled::{CompiledError, CompiledIndex};
pub use depmod::{AliasTable, Compression, DepIndex, IndexError, ModuleEntry, SoftDep};
pub use manifest::{
    ChainEntry, ChainSpec, ColdplugSpec, InitSpec, Manifest, ManifestError, MeasureSpec,
    ModuleSpec, OnFailure, RootSpec, SoftdepSpec,
};
pub use name::{parse_proc_modules, ModuleName};
pub use plan::{
    plan, plan_at_boot, Action, Alternative, CriticalPath, CycleLink, Edge, EdgeKind, NodeId, Plan,
    PlanChain, PlanError, PlanInput, PlanNode, Reason, CMDLINE_CHAIN, CMDLINE_POST_CHAIN,
};
