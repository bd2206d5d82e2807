//! The device-mapper options of the kernel command line and the verity
//! superblock, from arbitrary bytes: the first line is a `dm-mod.create=`
//! value, the next four `roothash=`, `systemd.verity_root_data=`,
//! `…_hash=` and `…_options=`, and the whole input is also read as a hash
//! device's first bytes. Nothing panics; what `parse_create` accepts keeps
//! the kernel's bounds (names, types, counts, non-empty tables); a table
//! built from any accepted superblock and verity root is one line the
//! ioctl can carry (no NUL, no newline) with a length that matches the
//! superblock.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modules_manifest::dm::{
    parse_create, VerityRoot, VeritySuperblock, MAX_DEVICES, MAX_NAME, MAX_TARGETS,
    MAX_TARGET_TYPE, MAX_UUID,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let create = lines.next().unwrap_or("");
    let got = parse_create(create);
    assert_eq!(parse_create(create), got, "a pure function of the text");
    if let Ok(devices) = &got {
        assert!(!devices.is_empty() && devices.len() <= MAX_DEVICES);
        for d in devices {
            assert!(
                !d.name.is_empty() && d.name.len() <= MAX_NAME,
                "{:?}",
                d.name
            );
            assert!(!d.name.contains('/') && d.name != "." && d.name != "..");
            assert!(d
                .uuid
                .as_ref()
                .is_none_or(|u| !u.is_empty() && u.len() <= MAX_UUID));
            assert!(!d.targets.is_empty() && d.targets.len() <= MAX_TARGETS);
            for t in &d.targets {
                assert!(t.length > 0);
                assert!(!t.target_type.is_empty() && t.target_type.len() <= MAX_TARGET_TYPE);
                assert!(!t.args.contains(['\0', '\n']), "{:?}", t.args);
                for w in t.device_args() {
                    assert!(w.starts_with("/dev/") || w.contains(':'), "{w:?}");
                }
            }
        }
    } else if let Err(e) = &got {
        assert_eq!(e.option, "dm-mod.create");
    }

    let mut field = || lines.next().filter(|l| !l.is_empty());
    let (roothash, dev_data, dev_hash, options) = (field(), field(), field(), field());
    let root = VerityRoot::from_cmdline(roothash, dev_data, dev_hash, options);
    assert_eq!(root.is_some(), roothash.is_some());
    let sb = VeritySuperblock::parse(data);
    if let (Some(Ok(root)), Some(Ok(sb))) = (root, sb) {
        assert!(root.root_hash.bytes().all(|b| b.is_ascii_hexdigit()));
        if let Ok(dev) = root.device("254:0", "254:16", &sb) {
            assert_eq!(dev.name, "root");
            assert_eq!(Some(dev.targets[0].length), sb.data_sectors());
            assert!(!dev.targets[0].args.contains(['\0', '\n']));
        }
    }
});
