//! Finding the root block device without udev: `root=` names a device by
//! path, `MAJ:MIN`, `UUID=`, `LABEL=`, `PARTUUID=` or `PARTLABEL=`; we list
//! `/sys/class/block`, create missing device nodes, and read filesystem
//! superblocks and partition tables ourselves.
//!
//! One job per file: [`spec`] parses `root=`; the superblocks and
//! partition tables are read by `kmodinit_blockdev` (pure functions over
//! byte slices, fuzzed); [`scan`] walks sysfs (its directories are arguments, so tests run
//! on fake trees and image files); [`wait`] polls until the device appears.

pub mod scan;
pub mod spec;
pub mod wait;

pub use kmodinit_blockdev::{
    format_guid_mixed, format_uuid_be, gpt_entries, gpt_header, mbr_partitions, probe_filesystem,
    read_partition_table, FsInfo, GptHeader, PartitionId, PROBE_BYTES,
};
pub use scan::{BlockDevice, BlockScanner, FoundDevice};
pub use spec::{DeviceSpec, DeviceSpecError};
pub use wait::{wait_for, RealWaiter, RootWait, Waiter, POLL_MAX, POLL_MIN, WAIT_LOG_EVERY};
