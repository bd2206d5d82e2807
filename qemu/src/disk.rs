//! Root disks as raw image files, built without root privileges:
//! `mkfs.ext4 -d` for a whole-disk filesystem, `sgdisk` plus a copy of such a
//! filesystem into partition 1 for a GPT disk (`root=PARTUUID=`), and
//! `mkfs.f2fs` + `sload.f2fs -f` for a whole-disk f2fs (f2fs-tools).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use crate::error::{io_err, run, HarnessError};

/// Partition 1 of a [`GptDisk`] starts at sector 2048 (1 MiB), like fdisk does.
const PART_START_SECTOR: u64 = 2048;
const SECTOR: u64 = 512;
const MIB: u64 = 1024 * 1024;

/// A fresh random UUID from the kernel (`/proc/sys/kernel/random/uuid`).
pub fn random_uuid() -> Result<String, HarnessError> {
    let p = "/proc/sys/kernel/random/uuid";
    Ok(std::fs::read_to_string(p)
        .map_err(io_err("reading", p))?
        .trim()
        .to_string())
}

/// An ext4 filesystem image filled from a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Image {
    pub uuid: String,
    pub label: String,
    pub size_mib: u64,
}

impl Ext4Image {
    /// A filesystem of `size_mib` MiB with a random UUID and label `kmiroot`.
    pub fn new(size_mib: u64) -> Result<Ext4Image, HarnessError> {
        Ok(Ext4Image {
            uuid: random_uuid()?,
            label: "kmiroot".into(),
            size_mib,
        })
    }

    /// Writes the image to `out` (replaced), with `from` as its root.
    pub fn build(&self, from: &Path, out: &Path) -> Result<(), HarnessError> {
        if out.exists() {
            std::fs::remove_file(out).map_err(io_err("removing", out))?;
        }
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "root_owner=0:0", "-U", &self.uuid, "-L"])
            .arg(&self.label)
            .arg("-d")
            .arg(from)
            .arg(out)
            .arg(format!("{}M", self.size_mib)))?;
        Ok(())
    }
}

/// An f2fs filesystem image filled from a directory (`mkfs.f2fs`, then
/// `sload.f2fs -f DIR`: no mount, no root privileges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct F2fsImage {
    pub uuid: String,
    pub label: String,
    /// f2fs wants some room: below about 40 MiB `mkfs.f2fs` refuses.
    pub size_mib: u64,
}

impl F2fsImage {
    /// A filesystem of `size_mib` MiB with a random UUID and label `kmiroot`.
    pub fn new(size_mib: u64) -> Result<F2fsImage, HarnessError> {
        Ok(F2fsImage {
            uuid: random_uuid()?,
            label: "kmiroot".into(),
            size_mib,
        })
    }

    /// Writes the image to `out` (replaced), with `from` as its root
    /// (owners preserved: `sload.f2fs -P`).
    pub fn build(&self, from: &Path, out: &Path) -> Result<(), HarnessError> {
        if out.exists() {
            std::fs::remove_file(out).map_err(io_err("removing", out))?;
        }
        {
            let f = std::fs::File::create(out).map_err(io_err("creating", out))?;
            f.set_len(self.size_mib * MIB)
                .map_err(io_err("sizing", out))?;
        }
        run(Command::new("mkfs.f2fs")
            .args(["-q", "-f", "-U", &self.uuid, "-l", &self.label])
            .arg(out))?;
        run(Command::new("sload.f2fs")
            .arg("-P")
            .arg("-f")
            .arg(from)
            .arg(out))?;
        Ok(())
    }
}

/// A GPT disk whose partition 1 holds an [`Ext4Image`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptDisk {
    /// The partition's unique GUID (`root=PARTUUID=…`).
    pub part_uuid: String,
    pub fs: Ext4Image,
}

impl GptDisk {
    pub fn new(size_mib: u64) -> Result<GptDisk, HarnessError> {
        Ok(GptDisk {
            part_uuid: random_uuid()?,
            fs: Ext4Image::new(size_mib)?,
        })
    }

    /// Writes the disk to `out` (replaced): GPT with one Linux partition at
    /// 1 MiB, filled with an ext4 image of `from`.
    pub fn build(&self, from: &Path, out: &Path) -> Result<(), HarnessError> {
        let fs_img = out.with_extension("part.img");
        self.fs.build(from, &fs_img)?;
        // 1 MiB before the partition, 1 MiB after it for the backup GPT.
        let total = (self.fs.size_mib + 2) * MIB;
        {
            let f = std::fs::File::create(out).map_err(io_err("creating", out))?;
            f.set_len(total).map_err(io_err("sizing", out))?;
        }
        run(Command::new("sgdisk")
            .arg("-o")
            .arg(format!("-n=1:{PART_START_SECTOR}:+{}M", self.fs.size_mib))
            .arg(format!("-u=1:{}", self.part_uuid))
            .arg("-t=1:8300")
            .arg("-c=1:kmiroot")
            .arg(out))?;
        let data = std::fs::read(&fs_img).map_err(io_err("reading", &fs_img))?;
        let mut disk = std::fs::OpenOptions::new()
            .write(true)
            .open(out)
            .map_err(io_err("opening", out))?;
        disk.seek(SeekFrom::Start(PART_START_SECTOR * SECTOR))
            .map_err(io_err("seeking in", out))?;
        disk.write_all(&data).map_err(io_err("writing", out))?;
        std::fs::remove_file(&fs_img).map_err(io_err("removing", &fs_img))?;
        Ok(())
    }
}
