//! Kernel releases (`uname -r` strings) and the installed trees named after
//! them: which of several module trees is the newest. One answer for the
//! QEMU harness (`kmodinit_qemu::HostKernel`) and the tests that read the
//! host's module tree, so they agree on the kernel they use.

use std::cmp::Ordering;
use std::path::Path;

/// Orders release strings as version numbers: runs of digits compare
/// numerically, everything else as text (`6.1.0-56-amd64` > `6.1.0-9-amd64`,
/// `6.10.0` > `6.9.2`).
pub fn compare(a: &str, b: &str) -> Ordering {
    chunks(a).cmp(&chunks(b))
}

fn chunks(s: &str) -> Vec<Result<u64, &str>> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = s.as_bytes();
    for i in 1..=bytes.len() {
        if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
            let part = &s[start..i];
            out.push(if bytes[start].is_ascii_digit() {
                part.parse::<u64>().map_err(|_| part)
            } else {
                Err(part)
            });
            start = i;
        }
    }
    out
}

/// The newest release `R` that has a depmod index `lib_modules/R/modules.dep`
/// and, when `boot` is given, a kernel image `boot/vmlinuz-R`; `wanted`
/// restricts the choice to that one release. `Ok(None)` when no release
/// qualifies; `Err` when the directory listed (`boot` when given, else
/// `lib_modules`) cannot be read.
///
/// Reads directories only (no module file is opened).
pub fn newest_installed(
    lib_modules: &Path,
    boot: Option<&Path>,
    wanted: Option<&str>,
) -> std::io::Result<Option<String>> {
    let (listed, prefix) = match boot {
        Some(b) => (b, "vmlinuz-"),
        None => (lib_modules, ""),
    };
    let newest = std::fs::read_dir(listed)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_prefix(prefix).map(str::to_owned))
        .filter(|r| wanted.is_none_or(|w| w == r))
        .filter(|r| lib_modules.join(r).join("modules.dep").is_file())
        .max_by(|a, b| compare(a, b));
    Ok(newest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(
            compare("6.1.0-56-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(compare("6.10.0", "6.9.2"), Ordering::Greater);
        assert_eq!(compare("6.1.0", "6.1.0"), Ordering::Equal);
        assert_eq!(compare("6.1.0", "6.1.0-1"), Ordering::Less);
        assert_eq!(compare("", "6"), Ordering::Less);
    }

    #[test]
    fn newest_tree_with_an_index_and_optionally_an_image() {
        let t = std::env::temp_dir().join(format!("mm-release-{}", std::process::id()));
        let boot = t.join("boot");
        let mods = t.join("lib/modules");
        std::fs::create_dir_all(&boot).unwrap();
        // 6.10 has an index but no image; 6.2 an image but no index.
        for r in ["6.1.0-9-amd64", "6.1.0-56-amd64", "6.10.1"] {
            std::fs::create_dir_all(mods.join(r)).unwrap();
            std::fs::write(mods.join(r).join("modules.dep"), b"").unwrap();
        }
        std::fs::create_dir_all(mods.join("6.11.0-no-index")).unwrap();
        for r in ["6.1.0-9-amd64", "6.1.0-56-amd64", "6.2.0-1-amd64"] {
            std::fs::write(boot.join(format!("vmlinuz-{r}")), b"").unwrap();
        }
        let newest = |boot: Option<&Path>, wanted| newest_installed(&mods, boot, wanted).unwrap();
        assert_eq!(newest(None, None).as_deref(), Some("6.10.1"));
        assert_eq!(newest(Some(&boot), None).as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(
            newest(Some(&boot), Some("6.1.0-9-amd64")).as_deref(),
            Some("6.1.0-9-amd64")
        );
        assert_eq!(newest(Some(&boot), Some("6.2.0-1-amd64")), None);
        std::fs::remove_dir_all(&t).unwrap();
        assert!(newest_installed(&mods, None, None).is_err());
    }
}
