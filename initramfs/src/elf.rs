//! The machine an ELF file is built for, read from its header: the image
//! builder compares `/init` with the kernel modules so that an image never
//! pairs an `/init` of one architecture with a kernel of another (the
//! kernel would refuse to exec it, and the boot would end in a panic).

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

/// Bytes of the ELF header up to and including `e_machine`.
const HEADER_LEN: usize = 20;

/// Word size and machine of an ELF file (`EI_CLASS`, `e_machine`): what
/// must agree between `/init` and the modules (RISC-V 32 and 64 share a
/// machine number and differ in class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// 32 or 64.
    pub bits: u8,
    /// `e_machine` (`EM_X86_64` = 62, `EM_AARCH64` = 183, …).
    pub code: u16,
}

impl Machine {
    /// The machine of an ELF header, `None` when `bytes` does not start
    /// with one (a shell script, a truncated file) or it names no machine
    /// (`EM_NONE`, as hand-made test objects do): nothing to compare.
    pub fn from_header(bytes: &[u8]) -> Option<Machine> {
        let h = bytes.get(..HEADER_LEN)?;
        if h[..4] != *b"\x7fELF" {
            return None;
        }
        let bits = match h[4] {
            1 => 32,
            2 => 64,
            _ => return None,
        };
        let raw = [h[18], h[19]];
        let code = match h[5] {
            1 => u16::from_le_bytes(raw),
            2 => u16::from_be_bytes(raw),
            _ => return None,
        };
        (code != 0).then_some(Machine { bits, code })
    }

    /// The machine of the ELF file at `path` (its first bytes only).
    pub fn of_file(path: &Path) -> io::Result<Option<Machine>> {
        let mut head = Vec::with_capacity(HEADER_LEN);
        std::fs::File::open(path)?
            .take(HEADER_LEN as u64)
            .read_to_end(&mut head)?;
        Ok(Machine::from_header(&head))
    }

    /// The architecture's usual name, when it is one Linux runs on.
    fn name(self) -> Option<&'static str> {
        Some(match (self.code, self.bits) {
            (3, _) => "x86 (i386)",
            (62, _) => "x86-64",
            (40, _) => "arm (32-bit)",
            (183, _) => "arm64 (aarch64)",
            (243, 64) => "riscv64",
            (243, 32) => "riscv32",
            (258, _) => "loongarch64",
            (8, _) => "mips",
            (20, _) => "powerpc",
            (21, _) => "powerpc64",
            (22, _) => "s390",
            _ => return None,
        })
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ELF machine {} ({}-bit)", self.code, self.bits),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// An ELF header prefix: class, data encoding, machine.
    fn header(bits: u8, big_endian: bool, code: u16) -> Vec<u8> {
        let mut h = b"\x7fELF".to_vec();
        h.push(if bits == 64 { 2 } else { 1 });
        h.push(if big_endian { 2 } else { 1 });
        h.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, ABI, padding
        h.extend_from_slice(&[1, 0]); // e_type, only its place matters here
        let m = if big_endian {
            code.to_be_bytes()
        } else {
            code.to_le_bytes()
        };
        h.extend_from_slice(&m);
        h.extend_from_slice(&[0; 12]);
        h
    }

    #[test]
    fn reads_machine_and_class_in_either_byte_order() {
        let x86 = Machine::from_header(&header(64, false, 62)).unwrap();
        assert_eq!(x86, Machine { bits: 64, code: 62 });
        assert_eq!(x86.to_string(), "x86-64");
        let arm = Machine::from_header(&header(64, false, 183)).unwrap();
        assert_eq!(arm.to_string(), "arm64 (aarch64)");
        assert_ne!(x86, arm);
        let s390 = Machine::from_header(&header(64, true, 22)).unwrap();
        assert_eq!(s390.code, 22);
        let rv32 = Machine::from_header(&header(32, false, 243)).unwrap();
        let rv64 = Machine::from_header(&header(64, false, 243)).unwrap();
        assert_ne!(rv32, rv64);
        assert_eq!(rv64.to_string(), "riscv64");
        let odd = Machine::from_header(&header(64, false, 9999)).unwrap();
        assert_eq!(odd.to_string(), "ELF machine 9999 (64-bit)");
    }

    #[test]
    fn anything_else_is_not_elf() {
        assert_eq!(Machine::from_header(b"#!/bin/sh\necho hi\n"), None);
        assert_eq!(Machine::from_header(&header(64, false, 62)[..19]), None);
        let mut bad_class = header(64, false, 62);
        bad_class[4] = 7;
        assert_eq!(Machine::from_header(&bad_class), None);
        assert_eq!(Machine::from_header(b""), None);
        assert_eq!(Machine::from_header(&header(64, false, 0)), None);
    }

    #[test]
    fn reads_the_test_binary_itself() {
        let me = std::env::current_exe().unwrap();
        let m = Machine::of_file(&me).unwrap().unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(m.to_string(), "x86-64");
        }
        assert_eq!(m.bits as usize, usize::BITS as usize);
    }
}
