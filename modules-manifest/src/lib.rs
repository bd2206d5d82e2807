//! The pure core of kmodinit: everything between the bytes PID 1 reads and the
//! load plan its loader executes. No syscalls live here (the only I/O is the
//! optional [`DepIndex::load`] convenience that reads depmod files), so every
//! rule of the contract is tested on the host.
//!
//! Data flows one way:
//! [`Manifest`] + [`DepIndex`] + [`KernelCmdline`] → [`plan()`] → [`Plan`].

pub mod cmdline;
pub mod depmod;
pub mod manifest;
pub mod name;
pub mod plan;

pub use cmdline::KernelCmdline;
pub use depmod::{Compression, DepIndex, ModuleEntry};
pub use manifest::{Manifest, OnFailure};
pub use name::ModuleName;
pub use plan::{
    plan, Action, Edge, EdgeKind, NodeId, Plan, PlanChain, PlanInput, PlanNode, Reason,
};
