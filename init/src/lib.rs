//! kmodinit's PID 1: boot sequence, mounts, kmsg logging, loader, switch_root.

pub mod blockdev;
pub mod boot_config;
pub mod failure;
pub mod handover;
pub mod kmsg;
pub mod mount;
pub mod switch_root;
