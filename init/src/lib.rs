//! kmodinit's PID 1: boot sequence, mounts, kmsg logging, loader, switch_root.
//!
//! Data flows one way: [`boot_config`] (command line + manifest) → the
//! loader child ([`loader_process`], [`loader`] against a [`kernel::Kernel`])
//! → [`report`] → [`switch_root`] (finding the device: [`rootdev`]) →
//! [`handover`]. [`boot`] holds the steps `main.rs` calls in that order;
//! everything that touches the machine beyond module insertion goes through
//! [`sys::Sys`].

pub mod boot;
pub mod boot_config;
pub mod clock;
pub mod coldplug;
pub mod decompress;
pub mod failure;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod handover;
pub mod helper;
pub mod kernel;
pub mod kmsg;
pub mod loader;
pub mod loader_events;
pub mod loader_process;
pub mod measure;
pub mod modules_lock;
pub mod mount;
pub mod open_world;
pub use kmodinit_report as report;
pub mod rootdev;
pub mod supervise;
pub mod switch_root;
pub mod sys;
