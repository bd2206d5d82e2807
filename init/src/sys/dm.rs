//! The device-mapper ioctls (`linux/dm-ioctl.h`, interface version 4) on
//! `/dev/mapper/control`: create a device, load its table, resume it, and
//! read a target's status. A few dozen lines instead of a crate: `/init`'s
//! bytes are a product metric (init/SIZE.md).
#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use modules_manifest::dm::DmDevice;

/// `sizeof(struct dm_ioctl)`; the data (target specs) follows it.
const HEADER: usize = 312;
/// `sizeof(struct dm_target_spec)` (its parameters string follows it).
const SPEC: usize = 40;
const NAME_OFF: usize = 48;
const NAME_LEN: usize = 128;
const UUID_OFF: usize = 176;
const UUID_LEN: usize = 129;
const FLAGS_OFF: usize = 28;
const DEV_OFF: usize = 40;

const READONLY_FLAG: u32 = 1 << 0;
const PERSISTENT_DEV_FLAG: u32 = 1 << 3;
const BUFFER_FULL_FLAG: u32 = 1 << 8;

const DEV_CREATE: u32 = 3;
const DEV_REMOVE: u32 = 4;
const DEV_SUSPEND: u32 = 6;
const TABLE_LOAD: u32 = 9;
const TABLE_STATUS: u32 = 12;

/// Room for the status of a device's targets.
const STATUS_BYTES: usize = 16 * 1024;

/// `_IOWR(0xfd, cmd, struct dm_ioctl)`.
fn request(cmd: u32) -> u32 {
    (3 << 30) | ((HEADER as u32) << 16) | (0xfd << 8) | cmd
}

/// A `struct dm_ioctl` for device `name`, `extra` bytes of data after it.
fn header(name: &str, extra: usize) -> io::Result<Vec<u8>> {
    if name.len() >= NAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "device-mapper name too long",
        ));
    }
    let mut b = vec![0u8; HEADER + extra];
    for (i, v) in [4u32, 0, 0].iter().enumerate() {
        put32(&mut b, 4 * i, *v);
    }
    let size = b.len() as u32;
    put32(&mut b, 12, size);
    put32(&mut b, 16, HEADER as u32);
    b[NAME_OFF..NAME_OFF + name.len()].copy_from_slice(name.as_bytes());
    Ok(b)
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn get32(b: &[u8], off: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(v)
}

fn ioctl(control: &std::fs::File, cmd: u32, buf: &mut [u8]) -> io::Result<()> {
    // SAFETY: `buf` is a `struct dm_ioctl` of `buf.len()` bytes whose
    // `data_size` field says that length, so the kernel reads and writes
    // only inside it; the fd is open for the call's duration.
    let rc = unsafe { libc::ioctl(control.as_raw_fd(), request(cmd) as _, buf.as_mut_ptr()) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `huge_decode_dev` of the kernel's `dev` field.
fn decode_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) as u32;
    let minor = ((dev & 0xff) | ((dev >> 12) & !0xff)) as u32;
    (major, minor)
}

/// Creates `dev`, loads its table and resumes it; returns its
/// `major:minor`. A device whose table does not load is removed again.
pub fn create(control: &Path, dev: &DmDevice) -> io::Result<(u32, u32)> {
    let ctl = OpenOptions::new().read(true).write(true).open(control)?;
    let mut b = header(&dev.name, 0)?;
    if let Some(uuid) = &dev.uuid {
        let n = uuid.len().min(UUID_LEN - 1);
        b[UUID_OFF..UUID_OFF + n].copy_from_slice(&uuid.as_bytes()[..n]);
    }
    if let Some(minor) = dev.minor {
        put32(&mut b, FLAGS_OFF, PERSISTENT_DEV_FLAG);
        let m = u64::from(minor);
        b[DEV_OFF..DEV_OFF + 8].copy_from_slice(&((m & 0xff) | ((m & !0xff) << 12)).to_ne_bytes());
    }
    ioctl(&ctl, DEV_CREATE, &mut b)?;
    let mut d = [0u8; 8];
    d.copy_from_slice(&b[DEV_OFF..DEV_OFF + 8]);
    let number = decode_dev(u64::from_ne_bytes(d));
    let loaded = load_and_resume(&ctl, dev);
    if let Err(e) = loaded {
        if let Ok(mut r) = header(&dev.name, 0) {
            let _ = ioctl(&ctl, DEV_REMOVE, &mut r);
        }
        return Err(e);
    }
    Ok(number)
}

fn load_and_resume(ctl: &std::fs::File, dev: &DmDevice) -> io::Result<()> {
    let specs: Vec<usize> = dev
        .targets
        .iter()
        .map(|t| (SPEC + t.args.len() + 1).next_multiple_of(8))
        .collect();
    let mut b = header(&dev.name, specs.iter().sum())?;
    put32(&mut b, 20, dev.targets.len() as u32);
    if dev.read_only {
        put32(&mut b, FLAGS_OFF, READONLY_FLAG);
    }
    let mut off = HEADER;
    for (t, len) in dev.targets.iter().zip(&specs) {
        b[off..off + 8].copy_from_slice(&t.start.to_ne_bytes());
        b[off + 8..off + 16].copy_from_slice(&t.length.to_ne_bytes());
        put32(&mut b, off + 20, *len as u32);
        let ty = t.target_type.as_bytes();
        b[off + 24..off + 24 + ty.len().min(15)].copy_from_slice(&ty[..ty.len().min(15)]);
        b[off + SPEC..off + SPEC + t.args.len()].copy_from_slice(t.args.as_bytes());
        off += len;
    }
    ioctl(ctl, TABLE_LOAD, &mut b)?;
    // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table
    // becomes live.
    let mut r = header(&dev.name, 0)?;
    ioctl(ctl, DEV_SUSPEND, &mut r)
}

/// The status line of the first target of device `name` (for verity,
/// `V` while every block read verified, `C` once one did not).
pub fn status(control: &Path, name: &str) -> io::Result<String> {
    let ctl = OpenOptions::new().read(true).write(true).open(control)?;
    let mut b = header(name, STATUS_BYTES)?;
    ioctl(&ctl, TABLE_STATUS, &mut b)?;
    if get32(&b, 20) == 0 || get32(&b, FLAGS_OFF) & BUFFER_FULL_FLAG != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "device-mapper status: no target or no room",
        ));
    }
    let start = get32(&b, 16) as usize + SPEC;
    let text = b.get(start..).unwrap_or_default();
    let end = text.iter().position(|&c| c == 0).unwrap_or(text.len());
    Ok(String::from_utf8_lossy(&text[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_dm_ioctl_h() {
        // DM_DEV_CREATE and DM_TABLE_LOAD as the kernel headers define them.
        assert_eq!(request(DEV_CREATE), 0xc138_fd03);
        assert_eq!(request(TABLE_LOAD), 0xc138_fd09);
    }

    #[test]
    fn device_numbers_decode_like_the_kernel() {
        assert_eq!(decode_dev((254 << 8) | 3), (254, 3));
        assert_eq!(decode_dev((253 << 8) | 0x12 | (0x300 << 12)), (253, 0x312));
    }
}
