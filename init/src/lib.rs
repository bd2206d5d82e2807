//! kmodinit's PID 1: boot sequence, mounts, kmsg logging, loader, switch_root.
