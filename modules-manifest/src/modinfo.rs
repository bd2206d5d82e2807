//! A module file's `.modinfo` section: the parameters it declares.
//!
//! `modinfo` reads the ELF section `.modinfo` of a `.ko`: NUL-separated
//! `key=value` strings. A parameter shows as `parmtype=NAME:TYPE` (every
//! `module_param`) and, if documented, `parm=NAME:DESCRIPTION`. Only the
//! image builder calls this (on decompressed module files); `/init` reads
//! the names the builder recorded ([`parse_params_file`]), never ELF.
//!
//! The reader is bounded and never panics: every offset and size read from
//! the file is checked against its length (fuzz target `modinfo`).

use std::collections::{BTreeMap, BTreeSet};

use crate::name::ModuleName;

/// Parameters the kernel accepts for every module whatever its `.modinfo`
/// says (kernel/module/main.c `unknown_module_param_cb`: `async_probe`;
/// dynamic debug: `dyndbg`).
pub const ALWAYS_ACCEPTED: [&str; 2] = ["async_probe", "dyndbg"];

/// Why a file's `.modinfo` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModinfoError {
    /// Not an ELF file (or a class/byte order this reader does not know).
    NotElf,
    /// An offset or size in the headers points outside the file.
    Truncated(&'static str),
    /// No `.modinfo` section: not a kernel module.
    NoModinfo,
}

impl std::fmt::Display for ModinfoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModinfoError::NotElf => f.write_str("not an ELF file"),
            ModinfoError::Truncated(what) => write!(f, "truncated or corrupt ELF ({what})"),
            ModinfoError::NoModinfo => f.write_str("no .modinfo section (not a kernel module?)"),
        }
    }
}

impl std::error::Error for ModinfoError {}

/// Little or big endian reads at checked offsets.
#[derive(Clone, Copy)]
struct Reader<'a> {
    data: &'a [u8],
    big: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.data.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, at: usize) -> Option<u64> {
        let b = self.bytes::<2>(at)?;
        Some(u64::from(if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }))
    }
    fn u32(&self, at: usize) -> Option<u64> {
        let b = self.bytes::<4>(at)?;
        Some(u64::from(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }))
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let b = self.bytes::<8>(at)?;
        Some(if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }
}

/// The bytes of the ELF section `name`, `None` if there is none.
pub fn elf_section<'a>(elf: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, ModinfoError> {
    use ModinfoError::Truncated;
    if elf.get(..4) != Some(b"\x7fELF") {
        return Err(ModinfoError::NotElf);
    }
    let wide = match elf.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(ModinfoError::NotElf),
    };
    let big = match elf.get(5) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(ModinfoError::NotElf),
    };
    let r = Reader { data: elf, big };
    let word = |at: usize| if wide { r.u64(at) } else { r.u32(at) };
    let to_usize = |v: u64| usize::try_from(v).ok();
    // (e_shoff, e_shentsize, e_shnum, e_shstrndx) offsets, ELF64 / ELF32.
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (0x28, 0x3a, 0x3c, 0x3e)
    } else {
        (0x20, 0x2e, 0x30, 0x32)
    };
    let header = Truncated("ELF header");
    let shoff = word(shoff).and_then(to_usize).ok_or(header.clone())?;
    let entsize = r.u16(shentsize).and_then(to_usize).ok_or(header.clone())?;
    let count = r.u16(shnum).and_then(to_usize).ok_or(header.clone())?;
    let strndx = r.u16(shstrndx).and_then(to_usize).ok_or(header)?;
    let min_entsize = if wide { 64 } else { 40 };
    if count == 0 {
        return Ok(None);
    }
    if entsize < min_entsize {
        return Err(Truncated("section header size"));
    }
    // (sh_name, sh_type, sh_offset, sh_size) of section `i`.
    let section = |i: usize| -> Option<(usize, u64, usize, usize)> {
        let at = shoff.checked_add(i.checked_mul(entsize)?)?;
        let (off, size) = if wide {
            (r.u64(at.checked_add(24)?)?, r.u64(at.checked_add(32)?)?)
        } else {
            (r.u32(at.checked_add(16)?)?, r.u32(at.checked_add(20)?)?)
        };
        Some((
            to_usize(r.u32(at)?)?,
            r.u32(at.checked_add(4)?)?,
            to_usize(off)?,
            to_usize(size)?,
        ))
    };
    const SHT_NOBITS: u64 = 8;
    let data_of = |off: usize, size: usize| elf.get(off..off.checked_add(size)?);
    let (_, _, str_off, str_size) = section(strndx).ok_or(Truncated("section headers"))?;
    let names = data_of(str_off, str_size).ok_or(Truncated("section name table"))?;
    for i in 0..count {
        let (name_at, kind, off, size) = section(i).ok_or(Truncated("section headers"))?;
        let Some(rest) = names.get(name_at..) else {
            continue;
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        if &rest[..end] != name.as_bytes() {
            continue;
        }
        if kind == SHT_NOBITS {
            return Ok(Some(&[]));
        }
        return data_of(off, size)
            .map(Some)
            .ok_or(Truncated("section data"));
    }
    Ok(None)
}

/// The parameter names in a `.modinfo` section (from `parm=` and
/// `parmtype=` records), with `-` written `_` as the kernel compares them.
pub fn params_in_modinfo(modinfo: &[u8]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for record in modinfo.split(|&b| b == 0) {
        let value = record
            .strip_prefix(b"parm=")
            .or_else(|| record.strip_prefix(b"parmtype="));
        let Some(value) = value else {
            continue;
        };
        let name = value.split(|&b| b == b':').next().unwrap_or_default();
        if let Ok(name) = std::str::from_utf8(name) {
            if !name.is_empty() && !name.bytes().any(|b| b.is_ascii_whitespace()) {
                out.insert(param_key(name));
            }
        }
    }
    out
}

/// The parameters a module file (an uncompressed ELF) declares.
pub fn module_params(elf: &[u8]) -> Result<BTreeSet<String>, ModinfoError> {
    let modinfo = elf_section(elf, ".modinfo")?.ok_or(ModinfoError::NoModinfo)?;
    Ok(params_in_modinfo(modinfo))
}

/// A parameter name as the kernel compares it (`parameq`: `-` equals `_`).
pub fn param_key(name: &str) -> String {
    name.replace('-', "_")
}

/// The names of a parameter string (`a=1 b="x y" c`), split the kernel's
/// way, normalised with [`param_key`].
pub fn param_names(params: &str) -> Vec<String> {
    crate::cmdline::split_param_names(params)
        .into_iter()
        .map(|n| param_key(&n))
        .collect()
}

/// The names of `params` that `known` (a module's declared parameters)
/// lacks; [`ALWAYS_ACCEPTED`] names are never unknown.
pub fn unknown_params(params: &str, known: &BTreeSet<String>) -> Vec<String> {
    param_names(params)
        .into_iter()
        .filter(|p| !known.contains(p) && !ALWAYS_ACCEPTED.contains(&p.as_str()))
        .collect()
}

/// The file name of the parameter list in the image, next to `modules.dep`.
pub const PARAMS_FILE: &str = "modules.params";

/// `modules.params`: one line per module, `NAME PARAM PARAM…` (a module
/// without parameters has a line with its name alone). Written by the image
/// builder from each module's `.modinfo`, read by `/init`.
pub fn write_params_file(params: &BTreeMap<ModuleName, BTreeSet<String>>) -> String {
    let mut t = String::new();
    for (module, names) in params {
        t.push_str(module.as_str());
        for n in names {
            t.push(' ');
            t.push_str(n);
        }
        t.push('\n');
    }
    t
}

/// Reads [`write_params_file`]'s format. Lenient: a line whose first word
/// is not a module name is skipped, as is any word with a character a
/// parameter name cannot have.
pub fn parse_params_file(text: &str) -> BTreeMap<ModuleName, BTreeSet<String>> {
    let mut out: BTreeMap<ModuleName, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(Ok(module)) = words.next().map(ModuleName::new) else {
            continue;
        };
        let set = out.entry(module).or_default();
        set.extend(
            words
                .filter(|w| w.bytes().all(|b| b.is_ascii_graphic() && b != b'='))
                .map(param_key),
        );
    }
    out
}

/// A minimal ELF64 little-endian file whose only content is a `.modinfo`
/// section holding `modinfo` (NUL-separated `key=value` records): what
/// [`module_params`] reads of a real module, for tests and fuzz seeds.
pub fn minimal_module_elf(modinfo: &[u8]) -> Vec<u8> {
    build_elf(true, false, modinfo)
}

/// An ELF64 or ELF32 file, either byte order, with a `.modinfo` section
/// holding `info` and nothing else.
fn build_elf(wide: bool, big: bool, info: &[u8]) -> Vec<u8> {
    let names = b"\0.shstrtab\0.modinfo\0";
    let ehsize = if wide { 64 } else { 52 };
    let entsize: usize = if wide { 64 } else { 40 };
    let names_off = ehsize;
    let info_off = names_off + names.len();
    let shoff = info_off + info.len();
    let mut f = vec![0u8; shoff + 3 * entsize];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = if wide { 2 } else { 1 };
    f[5] = if big { 2 } else { 1 };
    let put = |f: &mut Vec<u8>, at: usize, v: u64, n: usize| {
        let bytes = if big {
            v.to_be_bytes()[8 - n..].to_vec()
        } else {
            v.to_le_bytes()[..n].to_vec()
        };
        f[at..at + n].copy_from_slice(&bytes);
    };
    let w = if wide { 8 } else { 4 };
    let (o_shoff, o_ent, o_num, o_str) = if wide {
        (0x28, 0x3a, 0x3c, 0x3e)
    } else {
        (0x20, 0x2e, 0x30, 0x32)
    };
    put(&mut f, o_shoff, shoff as u64, w);
    put(&mut f, o_ent, entsize as u64, 2);
    put(&mut f, o_num, 3, 2);
    put(&mut f, o_str, 1, 2);
    f[names_off..info_off].copy_from_slice(names);
    f[info_off..shoff].copy_from_slice(info);
    // Section 0 is null; 1 .shstrtab; 2 .modinfo.
    for (i, name, off, size) in [
        (1usize, 1u64, names_off, names.len()),
        (2, 11, info_off, info.len()),
    ] {
        let at = shoff + i * entsize;
        put(&mut f, at, name, 4);
        put(&mut f, at + 4, 1, 4);
        let (o_off, o_size) = if wide { (24, 32) } else { (16, 20) };
        put(&mut f, at + o_off, off as u64, w);
        put(&mut f, at + o_size, size as u64, w);
    }
    f
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use super::build_elf as fake_elf;

    const INFO: &[u8] = b"license=GPL\0parm=delay_ms:sleep this long in init (int)\0\
        parmtype=delay_ms:uint\0parmtype=tag:charp\0parm=x-y:dashes\0depends=\0";

    #[test]
    fn reads_parm_and_parmtype_in_every_elf_flavour() {
        for (wide, big) in [(true, false), (false, false), (true, true), (false, true)] {
            let elf = fake_elf(wide, big, INFO);
            let p = module_params(&elf).unwrap();
            assert_eq!(
                p.into_iter().collect::<Vec<_>>(),
                ["delay_ms", "tag", "x_y"],
                "wide={wide} big={big}"
            );
        }
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        assert_eq!(module_params(b"hello"), Err(ModinfoError::NotElf));
        let elf = fake_elf(true, false, INFO);
        // Cut inside the header, the name table, the last section header.
        for cut in [5, 20, 0x40, elf.len() - 64 + 28] {
            let r = module_params(&elf[..cut]);
            assert!(r.is_err(), "cut at {cut}: {r:?}");
        }
        let mut other = fake_elf(true, false, INFO);
        // Rename .modinfo to .modinfX.
        let at = other.windows(8).position(|w| w == b".modinfo").unwrap();
        other[at + 7] = b'X';
        assert_eq!(module_params(&other), Err(ModinfoError::NoModinfo));
    }

    proptest::proptest! {
        /// Corrupting any bytes of a valid module (headers included) gives
        /// an error or a set of names, never a panic (the stable twin of
        /// the `modinfo` fuzz target).
        #[test]
        fn corrupt_files_never_panic(
            flips in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 1..8),
            wide in proptest::bool::ANY,
            big in proptest::bool::ANY,
        ) {
            let mut elf = fake_elf(wide, big, INFO);
            for (at, b) in flips {
                let n = elf.len();
                elf[at % n] = b;
            }
            if let Ok(names) = module_params(&elf) {
                for n in names {
                    proptest::prop_assert!(!n.is_empty() && !n.contains('-'));
                }
            }
        }
    }

    #[test]
    fn unknown_params_split_like_the_kernel_and_allow_dyndbg() {
        let known: BTreeSet<String> = ["delay_ms", "tag", "x_y"].map(String::from).into();
        assert_eq!(
            unknown_params(
                r#"delay-ms=5 tag="a b" x-y dyndbg=+p bogus=1 "q=1 2""#,
                &known
            ),
            ["bogus", "q"]
        );
        assert!(unknown_params("", &known).is_empty());
    }

    #[test]
    fn params_file_round_trips_and_is_lenient() {
        let mut m = BTreeMap::new();
        m.insert(
            ModuleName::new("kmi_a").unwrap(),
            ["delay_ms", "tag"].map(String::from).into(),
        );
        m.insert(ModuleName::new("kmi_b").unwrap(), BTreeSet::new());
        let t = write_params_file(&m);
        assert_eq!(t, "kmi_a delay_ms tag\nkmi_b\n");
        assert_eq!(parse_params_file(&t), m);
        let odd = parse_params_file("a/b x\n\nkmi_c p=1 q\n");
        assert_eq!(odd.len(), 1);
        assert_eq!(odd[&ModuleName::new("kmi_c").unwrap()].len(), 1);
    }
}
