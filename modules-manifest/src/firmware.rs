//! The firmware files modules ask for: the `firmware=` records of a
//! module's `.modinfo` (`MODULE_FIRMWARE("dir/name.bin")`), and
//! `modules.firmware`, the list the image builder writes beside
//! `modules.params` so that `/init` can name the module behind a firmware
//! request the kernel could not satisfy without reading ELF.
//!
//! Format of `modules.firmware`: one line per module that names firmware,
//! `MODULE FIRMWARE FIRMWARE…`, words separated by one space. A firmware
//! name is a relative path as the kernel's `request_firmware` takes it;
//! names with whitespace, a control character, an absolute path or a `..`
//! component are never written (no loader could look them up safely).

use std::collections::{BTreeMap, BTreeSet};

use crate::modinfo::{elf_section, ModinfoError};
use crate::name::ModuleName;

/// The file name of the firmware list in the image, next to `modules.dep`.
pub const FIRMWARE_FILE: &str = "modules.firmware";

/// Whether `name` is a firmware name this project carries: non-empty, at
/// most 255 bytes, relative, no `.`/`..`/empty component, no whitespace
/// or control character.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && name.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80)
}

/// The `firmware=` values of a `.modinfo` section, in file order, each
/// once. Values that are not UTF-8 or not [`is_plain_name`] are returned
/// apart (the caller warns about them).
pub fn firmware_in_modinfo(modinfo: &[u8]) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut refused = Vec::new();
    for record in modinfo.split(|&b| b == 0) {
        let Some(value) = record.strip_prefix(b"firmware=") else {
            continue;
        };
        let text = String::from_utf8_lossy(value).into_owned();
        if std::str::from_utf8(value).is_ok() && is_plain_name(&text) {
            if !names.contains(&text) {
                names.push(text);
            }
        } else {
            refused.push(text);
        }
    }
    (names, refused)
}

/// The module's own name (`name=` record of `.modinfo`), if it has one.
pub fn name_in_modinfo(modinfo: &[u8]) -> Option<ModuleName> {
    modinfo
        .split(|&b| b == 0)
        .find_map(|r| r.strip_prefix(b"name="))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| ModuleName::new(v).ok())
}

/// What a module file (an uncompressed ELF) says about firmware: its
/// `name=` and its `firmware=` records ([`firmware_in_modinfo`]).
pub fn module_firmware(elf: &[u8]) -> Result<ModuleFirmware, ModinfoError> {
    let modinfo = elf_section(elf, ".modinfo")?.ok_or(ModinfoError::NoModinfo)?;
    let (names, refused) = firmware_in_modinfo(modinfo);
    Ok(ModuleFirmware {
        name: name_in_modinfo(modinfo),
        firmware: names,
        refused,
    })
}

/// [`module_firmware`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModuleFirmware {
    /// The `name=` record (`None` in old or hand-made modules).
    pub name: Option<ModuleName>,
    /// The firmware names it declares, each once.
    pub firmware: Vec<String>,
    /// `firmware=` values that are no plain relative name.
    pub refused: Vec<String>,
}

/// `modules.firmware` for `firmware` (module → its firmware names);
/// modules without firmware get no line.
pub fn write_firmware_file(firmware: &BTreeMap<ModuleName, BTreeSet<String>>) -> String {
    // The same line format as modules.params, without the empty lines.
    let plain: BTreeMap<ModuleName, BTreeSet<String>> = firmware
        .iter()
        .map(|(m, names)| {
            let names = names.iter().filter(|n| is_plain_name(n)).cloned();
            (m.clone(), names.collect::<BTreeSet<String>>())
        })
        .filter(|(_, names)| !names.is_empty())
        .collect();
    crate::modinfo::write_params_file(&plain)
}

/// The modules that [`write_firmware_file`]'s `text` says name the
/// firmware file `name`, in file order, each once. Lenient: a line whose
/// first word is not a module name is skipped. A scan rather than a map:
/// `/init` looks up the few names the kernel failed to load.
pub fn modules_naming(text: &str, name: &str) -> Vec<ModuleName> {
    let mut out: Vec<ModuleName> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(Ok(module)) = words.next().map(ModuleName::new) else {
            continue;
        };
        if words.any(|w| w == name) && !out.contains(&module) {
            out.push(module);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::modinfo::minimal_module_elf;

    fn name(n: &str) -> ModuleName {
        ModuleName::new(n).unwrap()
    }

    #[test]
    fn firmware_records_of_a_module_file() {
        let elf = minimal_module_elf(
            b"license=GPL\0firmware=kmodinit-test/a.bin\0name=kmi_fw\0\
              firmware=b.fw\0firmware=kmodinit-test/a.bin\0firmware=../etc/shadow\0\
              firmware=/abs\0firmware=two words\0parm=x:y\0",
        );
        let m = module_firmware(&elf).unwrap();
        assert_eq!(m.name, Some(name("kmi_fw")));
        assert_eq!(m.firmware, ["kmodinit-test/a.bin", "b.fw"]);
        assert_eq!(m.refused, ["../etc/shadow", "/abs", "two words"]);
        assert_eq!(
            module_firmware(b"not elf"),
            Err(ModinfoError::NotElf),
            "a non-ELF file is an error, not an empty list"
        );
    }

    #[test]
    fn plain_names() {
        for ok in [
            "a",
            "iwlwifi-cc-a0-77.ucode",
            "amdgpu/navi10_gpu_info.bin",
            "é/x",
        ] {
            assert!(is_plain_name(ok), "{ok}");
        }
        for bad in [
            "", "/a", "a/../b", "..", "./a", "a//b", "a/", "a b", "a\tb", "a\nb",
        ] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        assert!(!is_plain_name(&"x".repeat(256)));
    }

    #[test]
    fn file_round_trip_and_lenient_reading() {
        let mut m = BTreeMap::new();
        m.insert(
            name("kmi_fw"),
            BTreeSet::from(["kmodinit-test/a.bin".to_owned(), "b.fw".to_owned()]),
        );
        m.insert(name("e1000e"), BTreeSet::new());
        m.insert(name("iwlwifi"), BTreeSet::from(["b.fw".to_owned()]));
        let text = write_firmware_file(&m);
        assert_eq!(text, "iwlwifi b.fw\nkmi_fw b.fw kmodinit-test/a.bin\n");
        assert_eq!(
            modules_naming(&text, "b.fw"),
            [name("iwlwifi"), name("kmi_fw")]
        );
        assert_eq!(
            modules_naming(&text, "kmodinit-test/a.bin"),
            [name("kmi_fw")]
        );
        assert!(modules_naming(&text, "kmodinit-test").is_empty());

        let odd = "bad/name x.fw\n\nkmi_fw ok.fw\nkmi_fw ok.fw\n";
        assert!(modules_naming(odd, "x.fw").is_empty());
        assert_eq!(modules_naming(odd, "ok.fw"), [name("kmi_fw")]);
    }
}
