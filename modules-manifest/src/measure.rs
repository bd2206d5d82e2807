//! Measured loading, the pure part: which extends a boot makes into the
//! TPM and in which order, SHA-256, and the PCR arithmetic. `/init` makes
//! these extends; `kmodinit measure` replays them from an image alone, so
//! both sides share this one list.
//!
//! The events, in order:
//! 1. `manifest`: the SHA-256 of the manifest file's bytes;
//! 2. `cmdline`: the SHA-256 of [`cmdline_settings`] (the command-line
//!    settings that change what loads and how: module parameters, lists,
//!    skips, `kmodinit.coldplug`, `.measure`, `.lock_modules`), so the
//!    same command line gives the same value whatever else it holds;
//! 3. for every module the plan inserts, in plan order (a topological
//!    order, fixed by image and command line): `module NAME`, the SHA-256
//!    of its file as the image holds it, then, when it has parameters,
//!    `params NAME: PARAMS`, the SHA-256 of the parameter string (as
//!    Heads' `insmod` extends a module and its arguments separately).
//!
//! Modules added while the load runs (coldplug, the kernel's requests)
//! follow as the same pair of events, in the order they come.

use crate::cmdline::{CmdlineName, KernelCmdline};
use crate::manifest::{Manifest, MeasureSpec};
use crate::name::ModuleName;
use crate::plan::{Action, Plan};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// One extend: the digest extended and what it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub digest: Digest,
    pub what: String,
}

/// The measurement settings in effect: the manifest's `measure`, then
/// `kmodinit.measure=PCR|off` (the command line wins; a PCR given only on
/// the command line is not required).
pub fn settings(manifest: Option<&Manifest>, cmdline: &KernelCmdline) -> Option<MeasureSpec> {
    let from_manifest = manifest.and_then(|m| m.measure);
    match cmdline.measure {
        None => from_manifest,
        Some(None) => None,
        Some(Some(pcr)) => Some(MeasureSpec {
            pcr,
            required: from_manifest.is_some_and(|m| m.required),
        }),
    }
}

/// Whether module loading is locked when the load is over: the manifest's
/// `lock_modules`, `kmodinit.lock_modules=0|1` winning.
pub fn lock_modules(manifest: Option<&Manifest>, cmdline: &KernelCmdline) -> bool {
    cmdline
        .lock_modules
        .unwrap_or_else(|| manifest.is_some_and(|m| m.lock_modules))
}

/// The command-line settings that are measured: the parsed values, not
/// the text, as `key=value` fields joined by `; ` in a fixed order (maps
/// sorted), so that options the loader does not read (`console=`,
/// `root=`) and their order leave the value alone. Written by hand rather
/// than through serde: `/init` pays bytes for every serialiser.
pub fn cmdline_settings(cmdline: &KernelCmdline) -> String {
    fn names<'a>(list: impl Iterator<Item = &'a str>) -> String {
        list.collect::<Vec<_>>().join(",")
    }
    fn flag(v: Option<bool>) -> &'static str {
        match v {
            None => "",
            Some(true) => "1",
            Some(false) => "0",
        }
    }
    let mut fields = Vec::new();
    for (module, params) in &cmdline.module_params {
        fields.push(format!("{module}.{}", params.join(" ")));
    }
    let measure = match cmdline.measure {
        None => String::new(),
        Some(None) => "off".to_owned(),
        Some(Some(pcr)) => pcr.to_string(),
    };
    fields.extend([
        format!(
            "blacklist={}",
            names(cmdline.blacklist.iter().map(ModuleName::as_str))
        ),
        format!(
            "load={}",
            names(
                cmdline
                    .load
                    .iter()
                    .map(|n: &CmdlineName<ModuleName>| n.name.as_str())
            )
        ),
        format!(
            "load_post={}",
            names(cmdline.load_post.iter().map(|n| n.name.as_str()))
        ),
        format!(
            "skip={}",
            names(cmdline.skip.iter().map(|n| n.name.as_str()))
        ),
        format!("coldplug={}", flag(cmdline.coldplug)),
        format!("measure={measure}"),
        format!("lock_modules={}", flag(cmdline.lock_modules)),
    ]);
    fields.join("; ")
}

/// The first two events: the manifest's bytes, the command line's settings.
pub fn head_events(manifest_bytes: &[u8], cmdline: &KernelCmdline) -> [Event; 2] {
    let settings = cmdline_settings(cmdline);
    [
        Event {
            digest: sha256(manifest_bytes),
            what: "manifest".to_owned(),
        },
        Event {
            digest: sha256(settings.as_bytes()),
            what: format!("cmdline {settings}"),
        },
    ]
}

/// The events of one module whose file has digest `file`.
pub fn module_events(name: &ModuleName, file: Digest, params: &str) -> Vec<Event> {
    let mut out = vec![Event {
        digest: file,
        what: format!("module {name}"),
    }];
    if !params.is_empty() {
        out.push(Event {
            digest: sha256(params.as_bytes()),
            what: format!("params {name}: {params}"),
        });
    }
    out
}

/// One module the plan inserts, in the order it is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured<'p> {
    pub id: usize,
    pub name: &'p ModuleName,
    /// Relative to the module directory.
    pub path: &'p str,
    pub params: &'p str,
}

/// The plan's modules to measure, in plan order: every node that inserts
/// a file (one a failure blocks later is measured too, so the value
/// depends on image and command line only).
pub fn plan_order(plan: &Plan) -> Vec<Measured<'_>> {
    plan.nodes
        .iter()
        .enumerate()
        .filter_map(|(id, n)| match &n.action {
            Action::Insert { path, .. } => Some(Measured {
                id,
                name: &n.name,
                path,
                params: &n.params,
            }),
            _ => None,
        })
        .collect()
}

/// `PCR := SHA-256(PCR || digest)`, as TPM2_PCR_Extend does in the
/// SHA-256 bank.
pub fn extend(pcr: &Digest, digest: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update(pcr);
    h.update(digest);
    h.finish()
}

/// The PCR value after `events`, from `initial`.
pub fn replay<'e>(initial: Digest, events: impl IntoIterator<Item = &'e Digest>) -> Digest {
    events.into_iter().fold(initial, |pcr, d| extend(&pcr, d))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// A digest from 64 hex digits (either case); `None` otherwise.
pub fn parse_hex(s: &str) -> Option<Digest> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(data);
    h.finish()
}

/// SHA-256 (FIPS 180-4), streaming. Our own rather than the `sha2`
/// crate: the same digests in about 1.5 KiB of `/init` (init/SIZE.md has
/// both figures), and speed matters little next to an insertion.
#[derive(Debug, Clone)]
pub struct Sha256 {
    state: [u32; 8],
    block: [u8; 64],
    /// Bytes in `block`.
    filled: usize,
    /// Bytes hashed in all.
    length: u64,
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    pub fn new() -> Self {
        Sha256 {
            state: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            block: [0; 64],
            filled: 0,
            length: 0,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        while !data.is_empty() {
            let take = (64 - self.filled).min(data.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == 64 {
                let block = self.block;
                self.compress(&block);
                self.filled = 0;
            }
        }
    }

    pub fn finish(mut self) -> Digest {
        let bits = self.length.wrapping_mul(8);
        self.update(&[0x80]);
        while self.filled != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_be_bytes());
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn compress(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 64];
        for (i, chunk) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.state;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (s, v) in self.state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *s = s.wrapping_add(v);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::DEFAULT_MEASURE_PCR;

    #[test]
    fn sha256_matches_the_fips_vectors() {
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        // A million 'a', fed in uneven pieces: the streaming edges.
        let mut h = Sha256::new();
        let chunk = [b'a'; 997];
        let mut left = 1_000_000usize;
        while left > 0 {
            let n = left.min(chunk.len());
            h.update(&chunk[..n]);
            left -= n;
        }
        assert_eq!(
            hex(&h.finish()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn sha256_agrees_with_pythons_hashlib_around_the_padding_edges() {
        // b"x" * n, digests from Python's hashlib.sha256.
        let known = [
            (
                55,
                "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072",
            ),
            (
                56,
                "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e",
            ),
            (
                63,
                "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2",
            ),
            (
                64,
                "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c",
            ),
            (
                65,
                "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9",
            ),
            (
                119,
                "000b48d4edf0fa7bee3c6236ecd2785baa5db4eeb8bb54341b029e0d9fa5fb0c",
            ),
            (
                120,
                "13f05a0b594787f5ecd315edc96141bd3243203d1b7d4f0836f37308b276ba98",
            ),
        ];
        for (n, digest) in known {
            assert_eq!(hex(&sha256(&vec![b'x'; n])), digest, "length {n}");
        }
        // One update against byte-by-byte updates, across two blocks.
        for n in 0..=130 {
            let data = vec![b'x'; n];
            let mut h = Sha256::new();
            for b in &data {
                h.update(std::slice::from_ref(b));
            }
            assert_eq!(h.finish(), sha256(&data), "length {n}");
        }
    }

    #[test]
    fn extend_and_replay_follow_the_tpm() {
        // SHA-256 bank: new = H(old || digest).
        let zero = [0u8; 32];
        let d = sha256(b"abc");
        let mut cat = zero.to_vec();
        cat.extend_from_slice(&d);
        assert_eq!(extend(&zero, &d), sha256(&cat));
        assert_eq!(replay(zero, [&d, &d]), extend(&extend(&zero, &d), &d));
        assert_eq!(replay(zero, []), zero);
    }

    #[test]
    fn hex_round_trips_and_rejects_what_is_not_a_digest() {
        let d = sha256(b"x");
        assert_eq!(parse_hex(&hex(&d)), Some(d));
        assert_eq!(parse_hex(&hex(&d).to_uppercase()), Some(d));
        assert_eq!(parse_hex("00"), None);
        assert_eq!(parse_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn the_command_line_wins_and_unrelated_options_do_not_count() {
        let m = Manifest::from_json(
            br#"{"version": 1, "measure": {"required": true}, "lock_modules": true}"#,
        )
        .unwrap();
        assert_eq!(
            settings(Some(&m), &KernelCmdline::default()),
            Some(MeasureSpec {
                pcr: DEFAULT_MEASURE_PCR,
                required: true
            })
        );
        assert_eq!(
            settings(Some(&m), &KernelCmdline::parse("kmodinit.measure=12")),
            Some(MeasureSpec {
                pcr: 12,
                required: true
            })
        );
        assert_eq!(
            settings(Some(&m), &KernelCmdline::parse("kmodinit.measure=off")),
            None
        );
        assert_eq!(
            settings(None, &KernelCmdline::parse("kmodinit.measure=14")),
            Some(MeasureSpec {
                pcr: 14,
                required: false
            })
        );
        assert_eq!(settings(None, &KernelCmdline::default()), None);
        assert!(lock_modules(Some(&m), &KernelCmdline::default()));
        assert!(!lock_modules(
            Some(&m),
            &KernelCmdline::parse("kmodinit.lock_modules=0")
        ));
        assert!(lock_modules(
            None,
            &KernelCmdline::parse("kmodinit.lock_modules=1")
        ));
        let bad = KernelCmdline::parse("kmodinit.measure=24 kmodinit.lock_modules=yes");
        assert_eq!(bad.measure, None);
        assert_eq!(bad.warnings.len(), 2, "{:?}", bad.warnings);

        let a = KernelCmdline::parse("console=ttyS0 kmi_a.tag=x root=/dev/vda");
        let b = KernelCmdline::parse("kmi_a.tag=x quiet");
        let c = KernelCmdline::parse("kmi_a.tag=y");
        assert_eq!(cmdline_settings(&a), cmdline_settings(&b));
        assert_ne!(cmdline_settings(&a), cmdline_settings(&c));
        assert_ne!(head_events(b"{}", &a)[1], head_events(b"{}", &c)[1]);
        assert_eq!(head_events(b"{}", &a)[0].digest, sha256(b"{}"));
    }

    #[test]
    fn a_module_is_its_file_then_its_params() {
        let n = ModuleName::new("kmi_a").unwrap();
        let f = sha256(b"elf");
        let e = module_events(&n, f, "");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].what, "module kmi_a");
        let e = module_events(&n, f, "tag=x delay_ms=5");
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].digest, sha256(b"tag=x delay_ms=5"));
        assert_eq!(e[1].what, "params kmi_a: tag=x delay_ms=5");
    }
}
