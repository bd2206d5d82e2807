//! What a block device's first bytes say, without udev or blkid:
//! [`probe`] reads filesystem superblocks (type, UUID, LABEL) and
//! [`partition`] reads MBR and GPT partition tables (PARTUUID,
//! PARTLABEL). Pure functions over byte slices (fuzzed), plus one reader
//! of a device's partition table.
//!
//! Shared by `/init`'s root finder (`root=UUID=…`) and the host tool's
//! `manifest-from-host` (the running root's UUID).

pub mod partition;
pub mod probe;

pub use partition::{
    format_guid_mixed, gpt_entries, gpt_header, mbr_partitions, read_partition_table, GptHeader,
    PartitionId,
};
pub use probe::{format_uuid_be, probe_filesystem, FsInfo, PROBE_BYTES};
