//! Finding the root block device without udev: `root=` names a device by
//! path, `MAJ:MIN`, `UUID=`, `LABEL=`, `PARTUUID=` or `PARTLABEL=`; we list
//! `/sys/class/block`, create missing device nodes, and read filesystem
//! superblocks and partition tables ourselves.
//!
//! One job per file: [`spec`] parses `root=`; [`probe`] reads superblocks
//! and [`partition`] partition tables (pure functions over byte slices,
//! fuzzed); [`scan`] walks sysfs (its directories are arguments, so tests run
//! on fake trees and image files); [`wait`] polls until the device appears.

pub mod partition;
pub mod probe;
pub mod scan;
pub mod spec;
pub mod wait;

pub use partition::{
    format_guid_mixed, gpt_entries, gpt_header, mbr_partitions, read_partition_table, GptHeader,
    PartitionId,
};
pub use probe::{format_uuid_be, probe_filesystem, FsInfo, PROBE_BYTES};
pub use scan::{BlockDevice, BlockScanner, FoundDevice};
pub use spec::{DeviceSpec, DeviceSpecError};
pub use wait::{wait_for, RealWaiter, RootWait, Waiter, POLL_MAX, POLL_MIN, WAIT_LOG_EVERY};
