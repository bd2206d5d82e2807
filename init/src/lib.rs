//! kmodinit's PID 1: boot sequence, mounts, kmsg logging, loader, switch_root.

pub mod clock;
pub mod decompress;
pub mod kernel;
pub mod loader;
pub mod report;
