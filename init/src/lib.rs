//! kmodinit's PID 1: boot sequence, mounts, kmsg logging, loader, switch_root.

pub mod blockdev;
pub mod boot;
pub mod boot_config;
pub mod cli;
pub mod clock;
pub mod decompress;
pub mod failure;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod handover;
pub mod kernel;
pub mod kmsg;
pub mod loader;
pub mod loader_events;
pub mod loader_process;
pub mod mount;
pub mod report;
pub mod supervise;
pub mod switch_root;
