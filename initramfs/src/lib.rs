//! `kmodinit-mkimage`: builds a reproducible kmodinit initramfs (a newc cpio,
//! optionally compressed) from a manifest and a kernel's module tree.
//!
//! Data flows one way: [`image::assemble`] plans the manifest against the
//! module tree and collects every member into a [`tree::Tree`];
//! [`tree::Tree::write_cpio`] serialises it in a fixed order;
//! [`compress::Compress`] compresses; [`image::write_atomically`] puts it
//! at the output path.

pub mod cli;
pub mod coldplug;
pub mod compress;
pub mod cpio;
pub mod elf;
pub mod firmware;
pub mod image;
pub mod index;
pub mod microcode;
pub mod modprobe;
pub mod modules;
pub mod params;
pub mod tree;
