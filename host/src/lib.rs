//! The host tool, `kmodinit`: everything of kmodinit that runs on the
//! machine that builds or inspects images, never in `/init`.
//!
//! One module per subcommand: `build` is the image builder
//! (`kmodinit_mkimage`, also installed as `kmodinit-mkimage`); [`plan`]
//! prints the load plan of a manifest against a module tree, strictly or as
//! the boot would make it; [`show_report`] reads a boot's `report.json` and
//! renders it through [`timeline`]; [`from_host`] writes a manifest for the
//! running machine; [`measure`] predicts the PCR value measured loading
//! leaves, from an image alone; [`update`] builds `/boot/initrd.img-RELEASE`
//! as the kernel hooks of the Debian package ask. The binary
//! (`src/main.rs`) only parses arguments.

pub mod from_host;
pub mod measure;
pub mod plan;
pub mod show_report;
pub mod timeline;
pub mod update;
