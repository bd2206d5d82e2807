//! Device-mapper tables from the kernel command line, parsed here so the
//! rules are tested and fuzzed on the host; PID 1 only waits for the
//! devices and makes the ioctls.
//!
//! Two syntaxes users already type:
//! - the kernel's own `dm-mod.create=` (Documentation/admin-guide/
//!   device-mapper/dm-init.rst), which the kernel cannot run itself when
//!   `dm_mod` is a module: `name,uuid,minor,flags,table[,table…][;name,…]`,
//!   each table `start length target args`;
//! - systemd's `roothash=HEX` with `systemd.verity_root_data=`,
//!   `systemd.verity_root_hash=` and `systemd.verity_root_options=`, whose
//!   table is built from the verity superblock `veritysetup format` wrote
//!   ([`VeritySuperblock`]) into the device `/dev/mapper/root`.

use std::fmt;

/// The longest `dm-mod.create=` value, devices and targets per device, as
/// the kernel's dm-init bounds them (`DM_MAX_STR_SIZE`, `DM_MAX_DEVICES`,
/// `DM_MAX_TARGETS`).
pub const MAX_CREATE_BYTES: usize = 4096;
pub const MAX_DEVICES: usize = 256;
pub const MAX_TARGETS: usize = 256;
/// Longest device name and uuid (`DM_NAME_LEN`, `DM_UUID_LEN` less the
/// NUL) and target type (`DM_MAX_TYPE_NAME` less the NUL).
pub const MAX_NAME: usize = 127;
pub const MAX_UUID: usize = 128;
pub const MAX_TARGET_TYPE: usize = 15;
/// The device systemd's `roothash=` creates.
pub const VERITY_ROOT_NAME: &str = "root";
pub use kmodinit_blockdev::verity::{VeritySuperblock, VERITY_SB_BYTES};

/// One line of a device's table: `start length target args`, in 512-byte
/// sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmTarget {
    pub start: u64,
    pub length: u64,
    pub target_type: String,
    pub args: String,
}

impl DmTarget {
    /// The words of `args` that name a block device (`/dev/…` or
    /// `MAJ:MIN`): the devices to wait for before the table loads.
    pub fn device_args(&self) -> impl Iterator<Item = &str> {
        self.args
            .split_ascii_whitespace()
            .filter(|w| is_device_word(w))
    }
}

fn is_device_word(w: &str) -> bool {
    if w.starts_with("/dev/") {
        return true;
    }
    match w.split_once(':') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// A device to create: its name, optional uuid and minor, read-only or
/// not, and its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmDevice {
    pub name: String,
    pub uuid: Option<String>,
    pub minor: Option<u32>,
    pub read_only: bool,
    pub targets: Vec<DmTarget>,
}

impl DmDevice {
    /// True if one of its targets is `verity`.
    pub fn is_verity(&self) -> bool {
        self.targets.iter().any(|t| t.target_type == "verity")
    }
}

/// Why a `dm-mod.create=` or `roothash=` value cannot be used; the message
/// names the option, the device and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmError {
    /// `dm-mod.create`, `roothash`, `systemd.verity_root_options`, …
    pub option: &'static str,
    pub message: String,
}

impl fmt::Display for DmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.option, self.message)
    }
}

impl std::error::Error for DmError {}

fn create_err(message: String) -> DmError {
    DmError {
        option: "dm-mod.create",
        message,
    }
}

/// A device name device-mapper accepts and `/dev/mapper/NAME` can hold.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty device name".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "device name {name:?} is longer than {MAX_NAME} bytes"
        ));
    }
    if name == "." || name == ".." || name.contains('/') || name.bytes().any(|b| b < 0x20) {
        return Err(format!(
            "device name {name:?} holds '/' or a control character, or is . or .."
        ));
    }
    Ok(())
}

/// Parses a `dm-mod.create=` value (the command line's quotes already
/// removed). Devices are separated by `;`, fields by `,`; as in the kernel,
/// there is no escaping, blanks around fields are dropped, and every
/// device needs at least one table.
pub fn parse_create(value: &str) -> Result<Vec<DmDevice>, DmError> {
    if value.len() > MAX_CREATE_BYTES {
        return Err(create_err(format!(
            "{} bytes, more than the {MAX_CREATE_BYTES} the kernel's syntax allows",
            value.len()
        )));
    }
    let mut devices = Vec::new();
    for (i, dev) in value.split(';').enumerate() {
        if dev.trim().is_empty() && i > 0 {
            // A trailing ';' ends the list.
            continue;
        }
        if devices.len() == MAX_DEVICES {
            return Err(create_err(format!("more than {MAX_DEVICES} devices")));
        }
        let d = parse_device(dev).map_err(|m| create_err(format!("device {}: {m}", i + 1)))?;
        if devices.iter().any(|o: &DmDevice| o.name == d.name) {
            return Err(create_err(format!("device name {:?} given twice", d.name)));
        }
        devices.push(d);
    }
    Ok(devices)
}

fn parse_device(text: &str) -> Result<DmDevice, String> {
    let mut fields = text.split(',').map(str::trim);
    let mut field = |what: &str| {
        fields
            .next()
            .ok_or_else(|| format!("no {what} field (name,uuid,minor,flags,table)"))
    };
    let name = field("name")?;
    check_name(name)?;
    let at = |m: String| format!("{name:?}: {m}");
    let uuid = field("uuid")?;
    if uuid.len() > MAX_UUID {
        return Err(at(format!("uuid is longer than {MAX_UUID} bytes")));
    }
    let minor = match field("minor")? {
        "" => None,
        m => Some(
            m.parse::<u32>()
                .ok()
                .filter(|&n| n < 1 << 20)
                .ok_or_else(|| at(format!("minor {m:?} is not a number below 2^20")))?,
        ),
    };
    let read_only = match field("flags")? {
        "ro" => true,
        "rw" => false,
        f => return Err(at(format!("flags {f:?}: expected ro or rw"))),
    };
    let mut targets = Vec::new();
    for t in fields {
        if targets.len() == MAX_TARGETS {
            return Err(at(format!("more than {MAX_TARGETS} tables")));
        }
        targets.push(parse_target(t).map_err(|m| at(format!("table {}: {m}", targets.len() + 1)))?);
    }
    if targets.is_empty() {
        return Err(at("no table".into()));
    }
    Ok(DmDevice {
        name: name.to_owned(),
        uuid: (!uuid.is_empty()).then(|| uuid.to_owned()),
        minor,
        read_only,
        targets,
    })
}

/// `start length target args`.
fn parse_target(text: &str) -> Result<DmTarget, String> {
    let mut rest = text.trim_start();
    let mut word = |what: &str| -> Result<&str, String> {
        let w = rest
            .split_ascii_whitespace()
            .next()
            .ok_or_else(|| format!("no {what} (start length target args)"))?;
        rest = rest.trim_start()[w.len()..].trim_start();
        Ok(w)
    };
    let number = |w: &str, what: &str| {
        w.parse::<u64>()
            .map_err(|_| format!("{what} {w:?} is not a number of sectors"))
    };
    let start = number(word("start sector")?, "start")?;
    let length = number(word("length")?, "length")?;
    let target_type = word("target type")?;
    if target_type.len() > MAX_TARGET_TYPE || !target_type.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "target type {target_type:?} is not a name of at most {MAX_TARGET_TYPE} characters"
        ));
    }
    if length == 0 {
        return Err("length 0".into());
    }
    if rest.bytes().any(|b| b < 0x20 && b != b'\t') {
        return Err("arguments hold a control character".into());
    }
    Ok(DmTarget {
        start,
        length,
        target_type: target_type.to_owned(),
        args: rest.trim_end().to_owned(),
    })
}

/// The digest length in bytes of a hash verity may use, if known.
fn digest_len(algorithm: &str) -> Option<usize> {
    match algorithm {
        "sha1" => Some(20),
        "sha256" => Some(32),
        "sha512" => Some(64),
        _ => None,
    }
}

/// systemd's verity root from the command line: `roothash=` and the
/// `systemd.verity_root_*` options, checked but not yet resolved (its
/// devices are `root=`-style specs; the superblock is read at boot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityRoot {
    /// The root hash, lower-case hex.
    pub root_hash: String,
    /// `systemd.verity_root_data=`: a path or `UUID=`/`PARTUUID=`/… spec.
    pub data: String,
    /// `systemd.verity_root_hash=`.
    pub hash: String,
    /// Where the superblock is on the hash device, in bytes (`hash-offset=`).
    pub hash_offset: u64,
    /// Optional verity arguments (`ignore_zero_blocks`, …), in the
    /// kernel's spelling.
    pub features: Vec<&'static str>,
}

impl VerityRoot {
    /// Checks the options. `None` without `roothash=`; an error when one of
    /// the pieces is missing or malformed (it names the option).
    pub fn from_cmdline(
        roothash: Option<&str>,
        data: Option<&str>,
        hash: Option<&str>,
        options: Option<&str>,
    ) -> Option<Result<VerityRoot, DmError>> {
        let root_hash = roothash?;
        Some(Self::check(root_hash, data, hash, options))
    }

    fn check(
        root_hash: &str,
        data: Option<&str>,
        hash: Option<&str>,
        options: Option<&str>,
    ) -> Result<VerityRoot, DmError> {
        let err = |option, message: String| DmError { option, message };
        if root_hash.len() < 2
            || root_hash.len() > 128
            || root_hash.len() % 2 != 0
            || !root_hash.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(err(
                "roothash",
                format!("{root_hash:?} is not an even number (2 to 128) of hex digits"),
            ));
        }
        let device = |option: &'static str, v: Option<&str>| match v.map(str::trim) {
            Some(v) if !v.is_empty() && !v.bytes().any(|b| b.is_ascii_whitespace()) => {
                Ok(v.to_owned())
            }
            _ => Err(err(
                option,
                "needed with roothash= (a /dev path, UUID=, PARTUUID=, LABEL= or PARTLABEL=)"
                    .into(),
            )),
        };
        let data = device("systemd.verity_root_data", data)?;
        let hash = device("systemd.verity_root_hash", hash)?;
        let mut features = Vec::new();
        let mut hash_offset = 0;
        for o in options.unwrap_or("").split(',').map(str::trim) {
            let opt = |message: String| err("systemd.verity_root_options", message);
            let feature = match o {
                "" => continue,
                "ignore-corruption" => "ignore_corruption",
                "restart-on-corruption" => "restart_on_corruption",
                "panic-on-corruption" => "panic_on_corruption",
                "ignore-zero-blocks" => "ignore_zero_blocks",
                "check-at-most-once" => "check_at_most_once",
                _ => {
                    if let Some(v) = o.strip_prefix("hash-offset=") {
                        hash_offset = v
                            .parse()
                            .map_err(|_| opt(format!("hash-offset={v}: not a number of bytes")))?;
                        continue;
                    }
                    return Err(opt(format!(
                        "{o:?} is not supported (ignore-corruption, restart-on-corruption, \
                         panic-on-corruption, ignore-zero-blocks, check-at-most-once, hash-offset=)"
                    )));
                }
            };
            if !features.contains(&feature) {
                features.push(feature);
            }
        }
        let corruption = features
            .iter()
            .filter(|f| f.ends_with("_corruption"))
            .count();
        if corruption > 1 {
            return Err(err(
                "systemd.verity_root_options",
                "more than one of ignore-, restart-, panic-on-corruption".into(),
            ));
        }
        Ok(VerityRoot {
            root_hash: root_hash.to_ascii_lowercase(),
            data,
            hash,
            hash_offset,
            features,
        })
    }

    /// The device `/dev/mapper/root` with its verity table, once the data
    /// and hash devices are known (as `MAJ:MIN` or paths) and the
    /// superblock read at [`Self::hash_offset`]. Errors name the field.
    pub fn device(
        &self,
        data_dev: &str,
        hash_dev: &str,
        sb: &VeritySuperblock,
    ) -> Result<DmDevice, DmError> {
        let err = |message: String| DmError {
            option: "systemd.verity_root_hash",
            message,
        };
        if let Some(n) = digest_len(&sb.algorithm) {
            if self.root_hash.len() != 2 * n {
                return Err(DmError {
                    option: "roothash",
                    message: format!(
                        "{} hex digits, but the superblock's {} gives {}",
                        self.root_hash.len(),
                        sb.algorithm,
                        2 * n
                    ),
                });
            }
        }
        let sectors = sb
            .data_sectors()
            .ok_or_else(|| err("the superblock's data size overflows".into()))?;
        let hbs = u64::from(sb.hash_block_size);
        // The tree starts in the first hash block after the superblock.
        let hash_start = self
            .hash_offset
            .checked_add(VERITY_SB_BYTES as u64 + hbs - 1)
            .ok_or_else(|| err("hash-offset overflows".into()))?
            / hbs;
        let salt = if sb.salt.is_empty() {
            "-".to_owned()
        } else {
            sb.salt.iter().map(|b| format!("{b:02x}")).collect()
        };
        let mut args = format!(
            "{} {data_dev} {hash_dev} {} {} {} {hash_start} {} {} {salt}",
            sb.hash_type,
            sb.data_block_size,
            sb.hash_block_size,
            sb.data_blocks,
            sb.algorithm,
            self.root_hash
        );
        if !self.features.is_empty() {
            args.push_str(&format!(" {}", self.features.len()));
            for f in &self.features {
                args.push(' ');
                args.push_str(f);
            }
        }
        Ok(DmDevice {
            name: VERITY_ROOT_NAME.to_owned(),
            uuid: None,
            minor: None,
            read_only: true,
            targets: vec![DmTarget {
                start: 0,
                length: sectors,
                target_type: "verity".into(),
                args,
            }],
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    const VERITY: &str = "1 /dev/vda /dev/vdb 4096 4096 2048 1 sha256 \
        4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076 \
        1234000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn the_kernels_examples_parse() {
        // dm-init.rst's examples: linear over two disks, and verity.
        let two = parse_create(
            "lroot,,,rw, 0 4096 linear 98:16 0, 4096 4096 linear 98:32 0;\
             vroot,,,ro, 0 1740800 verity 254:0 254:0 1740800 sha1 \
             76e9be054b15884a9fa85973e9cb274c93afadb6 \
             5b3549d54d6c7a3837b9b81ed72e49463a64c03680c47835bef94d768e5646fe",
        )
        .unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].name, "lroot");
        assert!(!two[0].read_only && two[0].uuid.is_none() && two[0].minor.is_none());
        assert_eq!(
            two[0].targets,
            [
                DmTarget {
                    start: 0,
                    length: 4096,
                    target_type: "linear".into(),
                    args: "98:16 0".into()
                },
                DmTarget {
                    start: 4096,
                    length: 4096,
                    target_type: "linear".into(),
                    args: "98:32 0".into()
                }
            ]
        );
        assert!(two[1].read_only && two[1].is_verity() && !two[0].is_verity());
        assert_eq!(
            two[1].targets[0].device_args().collect::<Vec<_>>(),
            ["254:0", "254:0"]
        );
        let one = parse_create(&format!("vroot,4a2b-uuid,7,ro,0 16384 verity {VERITY};")).unwrap();
        assert_eq!(one[0].uuid.as_deref(), Some("4a2b-uuid"));
        assert_eq!(one[0].minor, Some(7));
        assert_eq!(
            one[0].targets[0].device_args().collect::<Vec<_>>(),
            ["/dev/vda", "/dev/vdb"]
        );
    }

    #[test]
    fn malformed_values_name_the_device_and_field() {
        let cases = [
            ("", "device 1: empty device name"),
            ("a", "device 1: no uuid field"),
            ("a,,,ro", "device 1: \"a\": no table"),
            (
                "a,,x,ro,0 8 linear /dev/vda 0",
                "minor \"x\" is not a number",
            ),
            (
                "a,,,rx,0 8 linear /dev/vda 0",
                "flags \"rx\": expected ro or rw",
            ),
            ("a,,,ro,0 8", "table 1: no target type"),
            (
                "a,,,ro,zero 8 linear",
                "table 1: start \"zero\" is not a number",
            ),
            ("a,,,ro,0 0 linear /dev/vda 0", "table 1: length 0"),
            ("a/b,,,ro,0 8 zero", "holds '/'"),
            ("a,,,ro,0 8 zero;a,,,ro,0 8 zero", "\"a\" given twice"),
            ("a,,,ro,0 8 averyveryverylongtarget", "target type"),
        ];
        for (input, want) in cases {
            let e = parse_create(input).unwrap_err();
            assert_eq!(e.option, "dm-mod.create");
            assert!(e.to_string().contains(want), "{input:?}: {e}");
        }
        let long = "x".repeat(MAX_CREATE_BYTES + 1);
        assert!(parse_create(&long)
            .unwrap_err()
            .message
            .contains("4097 bytes"));
    }

    fn superblock(salt: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; VERITY_SB_BYTES];
        b[0..8].copy_from_slice(b"verity\0\0");
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&1u32.to_le_bytes());
        for (i, x) in b[16..32].iter_mut().enumerate() {
            *x = i as u8;
        }
        b[32..38].copy_from_slice(b"sha256");
        b[64..68].copy_from_slice(&4096u32.to_le_bytes());
        b[68..72].copy_from_slice(&4096u32.to_le_bytes());
        b[72..80].copy_from_slice(&2048u64.to_le_bytes());
        b[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
        b[88..88 + salt.len()].copy_from_slice(salt);
        b
    }

    #[test]
    fn superblock_fields_and_the_table_built_from_them() {
        assert_eq!(VeritySuperblock::parse(&[0u8; 512]), None);
        let sb = VeritySuperblock::parse(&superblock(&[0x12, 0x34]))
            .unwrap()
            .unwrap();
        assert_eq!(sb.algorithm, "sha256");
        assert_eq!((sb.data_block_size, sb.data_blocks), (4096, 2048));
        assert_eq!(sb.data_sectors(), Some(16384));
        let hash = "4392712BA01368EFDF14B05C76F9E4DF0D53664630B5D48632ED17A137F39076";
        let v = VerityRoot::from_cmdline(
            Some(hash),
            Some("/dev/vda"),
            Some("UUID=x"),
            Some("ignore-zero-blocks,check-at-most-once"),
        )
        .unwrap()
        .unwrap();
        let d = v.device("254:0", "254:16", &sb).unwrap();
        assert_eq!(d.name, "root");
        assert!(d.read_only);
        assert_eq!(d.targets[0].length, 16384);
        assert_eq!(
            d.targets[0].args,
            format!(
                "1 254:0 254:16 4096 4096 2048 1 sha256 {} 1234 2 ignore_zero_blocks check_at_most_once",
                hash.to_ascii_lowercase()
            )
        );
        // No salt: "-"; a superblock 1 MiB into the device: the tree 257 blocks in.
        let sb = VeritySuperblock::parse(&superblock(&[])).unwrap().unwrap();
        let v = VerityRoot::from_cmdline(
            Some(hash),
            Some("a"),
            Some("b"),
            Some("hash-offset=1048576"),
        )
        .unwrap()
        .unwrap();
        let args = v.device("a", "b", &sb).unwrap().targets[0].args.clone();
        assert!(
            args.ends_with(
                " 257 sha256 4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076 -"
            ),
            "{args}"
        );
        // A sha1-length hash against a sha256 superblock.
        let v = VerityRoot::from_cmdline(Some(&hash[..40]), Some("a"), Some("b"), None)
            .unwrap()
            .unwrap();
        let e = v.device("a", "b", &sb).unwrap_err();
        assert_eq!(e.option, "roothash");
    }

    #[test]
    fn bad_superblocks_name_the_field() {
        let mut b = superblock(&[]);
        b[8] = 2;
        assert!(VeritySuperblock::parse(&b)
            .unwrap()
            .unwrap_err()
            .contains("version 2"));
        let mut b = superblock(&[]);
        b[64..68].copy_from_slice(&1000u32.to_le_bytes());
        assert!(VeritySuperblock::parse(&b)
            .unwrap()
            .unwrap_err()
            .contains("data block size 1000"));
        let mut b = superblock(&[]);
        b[80..82].copy_from_slice(&300u16.to_le_bytes());
        assert!(VeritySuperblock::parse(&b)
            .unwrap()
            .unwrap_err()
            .contains("salt of 300"));
        assert!(VeritySuperblock::parse(&superblock(&[])[..100])
            .unwrap()
            .is_err());
    }

    #[test]
    fn bad_systemd_options_name_the_option() {
        let h = "ab".repeat(32);
        let check = |r: Option<&str>, d: Option<&str>, x: Option<&str>, o: Option<&str>| {
            VerityRoot::from_cmdline(r, d, x, o).map(|r| r.map_err(|e| e.option))
        };
        assert_eq!(check(None, Some("a"), Some("b"), None), None);
        assert_eq!(
            check(Some("xyz"), Some("a"), Some("b"), None),
            Some(Err("roothash"))
        );
        assert_eq!(
            check(Some("abc"), Some("a"), Some("b"), None),
            Some(Err("roothash"))
        );
        assert_eq!(
            check(Some(&h), None, Some("b"), None),
            Some(Err("systemd.verity_root_data"))
        );
        assert_eq!(
            check(Some(&h), Some("a"), Some(""), None),
            Some(Err("systemd.verity_root_hash"))
        );
        assert_eq!(
            check(Some(&h), Some("a"), Some("b"), Some("fec-device=/dev/x")),
            Some(Err("systemd.verity_root_options"))
        );
        assert_eq!(
            check(
                Some(&h),
                Some("a"),
                Some("b"),
                Some("panic-on-corruption,ignore-corruption")
            ),
            Some(Err("systemd.verity_root_options"))
        );
    }

    /// A superblock written by the real `veritysetup format` (cryptsetup-bin,
    /// from `make deps`) parses to what `veritysetup dump` says.
    #[test]
    fn a_real_veritysetup_superblock() {
        let dir = std::env::temp_dir().join(format!("kmodinit-verity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (data, hash) = (dir.join("data"), dir.join("hash"));
        std::fs::write(&data, vec![7u8; 1 << 20]).unwrap();
        let out = std::process::Command::new("veritysetup")
            .args(["format", "--salt", "00ff", "--uuid"])
            .arg("0f9a36c4-5d64-4a8e-8e2c-1d3c7f0b9e21")
            .arg(&data)
            .arg(&hash)
            .output();
        let Ok(out) = out else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("missing test prerequisite with CI=true: veritysetup; run make deps");
            }
            eprintln!("skipped: veritysetup not installed; run make deps");
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let root_hash = text
            .lines()
            .find_map(|l| l.strip_prefix("Root hash:"))
            .unwrap()
            .trim()
            .to_owned();
        let bytes = std::fs::read(&hash).unwrap();
        let sb = VeritySuperblock::parse(&bytes).unwrap().unwrap();
        assert_eq!(sb.salt, [0x00, 0xff]);
        assert_eq!(sb.data_blocks, 256);
        assert_eq!(sb.algorithm, "sha256");
        assert_eq!(sb.uuid[..2], [0x0f, 0x9a]);
        let v = VerityRoot::from_cmdline(Some(&root_hash), Some("a"), Some("b"), None)
            .unwrap()
            .unwrap();
        let args = v.device("7:0", "7:1", &sb).unwrap().targets[0].args.clone();
        assert_eq!(
            args,
            format!("1 7:0 7:1 4096 4096 256 1 sha256 {root_hash} 00ff")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
