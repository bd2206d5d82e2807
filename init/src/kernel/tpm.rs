//! The TPM, as measured loading needs it: TPM2_PCR_Extend and
//! TPM2_PCR_Read of one PCR in the SHA-256 bank, as raw TPM 2.0 commands
//! written to the kernel's character device (`/dev/tpmrm0`, else
//! `/dev/tpm0`) and its response read back. A few dozen lines of byte
//! building instead of a TSS library: the commands are fixed-size, the
//! only authorisation is the empty password (TPM_RS_PW) the PCRs of a PC
//! client TPM take for extends. [`FakeTpm`] keeps a bank in memory for the
//! loader's tests.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use modules_manifest::measure::{extend, Digest};

/// What measured loading asks of a TPM. Blocking; one command at a time
/// (the caller serialises).
pub trait Tpm: Send {
    /// Extends PCR `pcr` of the SHA-256 bank with `digest`.
    fn extend(&mut self, pcr: u32, digest: &Digest) -> io::Result<()>;
    /// The value of PCR `pcr` in the SHA-256 bank.
    fn read(&mut self, pcr: u32) -> io::Result<Digest>;
}

const TPM_ST_NO_SESSIONS: u16 = 0x8001;
const TPM_ST_SESSIONS: u16 = 0x8002;
const TPM_CC_PCR_EXTEND: u32 = 0x0000_0182;
const TPM_CC_PCR_READ: u32 = 0x0000_017E;
const TPM_ALG_SHA256: u16 = 0x000B;
/// The password session with an empty password.
const TPM_RS_PW: u32 = 0x4000_0009;
/// Bytes of a PCR selection bitmap: PCRs 0 to 23.
const PCR_SELECT_BYTES: u8 = 3;
/// The longest response read (a PC client TPM's buffer is 4 KiB).
const MAX_RESPONSE_BYTES: usize = 4096;

/// The TPM2_PCR_Extend command of `digest` into `pcr` (SHA-256 bank).
pub fn extend_command(pcr: u32, digest: &Digest) -> Vec<u8> {
    let mut c = Vec::with_capacity(65);
    c.extend_from_slice(&TPM_ST_SESSIONS.to_be_bytes());
    c.extend_from_slice(&0u32.to_be_bytes()); // size, below
    c.extend_from_slice(&TPM_CC_PCR_EXTEND.to_be_bytes());
    c.extend_from_slice(&pcr.to_be_bytes()); // pcrHandle: the index
    c.extend_from_slice(&9u32.to_be_bytes()); // authorizationSize
    c.extend_from_slice(&TPM_RS_PW.to_be_bytes());
    c.extend_from_slice(&0u16.to_be_bytes()); // nonce: empty
    c.push(0); // sessionAttributes
    c.extend_from_slice(&0u16.to_be_bytes()); // hmac: the empty password
    c.extend_from_slice(&1u32.to_be_bytes()); // TPML_DIGEST_VALUES.count
    c.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    c.extend_from_slice(digest);
    set_size(&mut c);
    c
}

/// The TPM2_PCR_Read command of `pcr` (SHA-256 bank).
pub fn read_command(pcr: u32) -> Vec<u8> {
    let mut c = Vec::with_capacity(20);
    c.extend_from_slice(&TPM_ST_NO_SESSIONS.to_be_bytes());
    c.extend_from_slice(&0u32.to_be_bytes());
    c.extend_from_slice(&TPM_CC_PCR_READ.to_be_bytes());
    c.extend_from_slice(&1u32.to_be_bytes()); // TPML_PCR_SELECTION.count
    c.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    c.push(PCR_SELECT_BYTES);
    let mut select = [0u8; PCR_SELECT_BYTES as usize];
    if let Some(byte) = select.get_mut((pcr / 8) as usize) {
        *byte = 1 << (pcr % 8);
    }
    c.extend_from_slice(&select);
    set_size(&mut c);
    c
}

fn set_size(c: &mut [u8]) {
    let size = u32::try_from(c.len()).unwrap_or(u32::MAX).to_be_bytes();
    c[2..6].copy_from_slice(&size);
}

/// Checks a response's header: its size, and a response code of 0.
fn check_response(r: &[u8], what: &str) -> io::Result<()> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    if r.len() < 10 {
        return Err(bad(format!(
            "{what}: short TPM response ({} bytes)",
            r.len()
        )));
    }
    let size = u32::from_be_bytes([r[2], r[3], r[4], r[5]]) as usize;
    if size != r.len() {
        return Err(bad(format!(
            "{what}: TPM response of {} bytes says {size}",
            r.len()
        )));
    }
    let rc = u32::from_be_bytes([r[6], r[7], r[8], r[9]]);
    if rc != 0 {
        return Err(bad(format!("{what}: TPM response code {rc:#x}")));
    }
    Ok(())
}

/// The SHA-256 value of a TPM2_PCR_Read response.
pub fn parse_read_response(r: &[u8]) -> io::Result<Digest> {
    check_response(r, "TPM2_PCR_Read")?;
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("TPM2_PCR_Read: {m}"));
    // header (10), pcrUpdateCounter (4), TPML_PCR_SELECTION
    let mut at = 14;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(r.get(at..at + 4)?.try_into().ok()?))
    };
    let selections = word(at).ok_or_else(|| bad("truncated"))?;
    at += 4;
    for _ in 0..selections {
        let n = *r.get(at + 2).ok_or_else(|| bad("truncated"))?;
        at += 3 + usize::from(n);
    }
    let digests = word(at).ok_or_else(|| bad("truncated"))?;
    if digests == 0 {
        return Err(bad("the TPM has no SHA-256 bank (no digest returned)"));
    }
    at += 4;
    let len = r
        .get(at..at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| bad("truncated"))?;
    let value = r
        .get(at + 2..at + 2 + len)
        .filter(|v| v.len() == 32)
        .ok_or_else(|| bad("not a SHA-256 digest"))?;
    let mut d = [0u8; 32];
    d.copy_from_slice(value);
    Ok(d)
}

/// The kernel's TPM device.
#[derive(Debug)]
pub struct DeviceTpm {
    file: File,
    path: PathBuf,
}

impl DeviceTpm {
    /// Opens the first of `<dev>/tpmrm0` (the kernel's resource manager)
    /// and `<dev>/tpm0` that exists; the error names both.
    pub fn open(dev: &Path) -> io::Result<DeviceTpm> {
        let mut last = None;
        for name in ["tpmrm0", "tpm0"] {
            let path = dev.join(name);
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(file) => return Ok(DeviceTpm { file, path }),
                Err(e) => last = Some(e),
            }
        }
        let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound));
        Err(io::Error::new(
            e.kind(),
            format!(
                "no TPM: cannot open {} nor {}: {e}",
                dev.join("tpmrm0").display(),
                dev.join("tpm0").display()
            ),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One command, one response: the kernel's TPM devices take a whole
    /// command per write and give the whole response to the next read.
    fn transmit(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        self.file.write_all(command)?;
        let mut buf = vec![0u8; MAX_RESPONSE_BYTES];
        let n = self.file.read(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}

impl Tpm for DeviceTpm {
    fn extend(&mut self, pcr: u32, digest: &Digest) -> io::Result<()> {
        let r = self.transmit(&extend_command(pcr, digest))?;
        check_response(&r, "TPM2_PCR_Extend")
    }

    fn read(&mut self, pcr: u32) -> io::Result<Digest> {
        let r = self.transmit(&read_command(pcr))?;
        parse_read_response(&r)
    }
}

/// A TPM in memory for tests: 24 SHA-256 PCRs, each starting at the value
/// given, and every extend recorded. Clones share the bank, so a test
/// keeps one to look at what the loader did with the other.
#[derive(Debug, Clone, Default)]
pub struct FakeTpm {
    inner: Arc<Mutex<FakeBank>>,
}

#[derive(Debug, Default)]
struct FakeBank {
    pcrs: std::collections::BTreeMap<u32, Digest>,
    extends: Vec<(u32, Digest)>,
    fail_after: Option<usize>,
}

impl FakeTpm {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets PCR `pcr`'s value (the firmware's extends before ours).
    pub fn set(&self, pcr: u32, value: Digest) {
        self.bank().pcrs.insert(pcr, value);
    }

    /// Every extend in the order it came: (PCR, digest).
    pub fn extends(&self) -> Vec<(u32, Digest)> {
        self.bank().extends.clone()
    }

    /// The `n + 1`-th extend and every later one fail (a TPM that stops
    /// answering).
    pub fn fail_after(&self, n: usize) {
        self.bank().fail_after = Some(n);
    }

    fn bank(&self) -> std::sync::MutexGuard<'_, FakeBank> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Tpm for FakeTpm {
    fn extend(&mut self, pcr: u32, digest: &Digest) -> io::Result<()> {
        let mut bank = self.bank();
        if bank.fail_after.is_some_and(|n| bank.extends.len() >= n) {
            return Err(io::Error::other("fake TPM: TPM2_PCR_Extend failed"));
        }
        let old = bank.pcrs.get(&pcr).copied().unwrap_or([0; 32]);
        bank.pcrs.insert(pcr, extend(&old, digest));
        bank.extends.push((pcr, *digest));
        Ok(())
    }

    fn read(&mut self, pcr: u32) -> io::Result<Digest> {
        Ok(self.bank().pcrs.get(&pcr).copied().unwrap_or([0; 32]))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use modules_manifest::measure::sha256;

    #[test]
    fn the_extend_command_is_the_tpm2_layout() {
        let d = sha256(b"abc");
        let c = extend_command(9, &d);
        assert_eq!(c.len(), 65);
        let head: [u8; 33] = [
            0x80, 0x02, // TPM_ST_SESSIONS
            0, 0, 0, 65, // size
            0, 0, 0x01, 0x82, // TPM_CC_PCR_Extend
            0, 0, 0, 9, // PCR 9
            0, 0, 0, 9, // authorizationSize
            0x40, 0, 0, 9, // TPM_RS_PW
            0, 0, // nonce
            0, // attributes
            0, 0, // hmac
            0, 0, 0, 1, // one digest
            0, 0x0B, // SHA-256
        ];
        assert_eq!(&c[..33], &head);
        assert_eq!(&c[33..], &d);
    }

    #[test]
    fn the_read_command_selects_one_pcr() {
        let c = read_command(9);
        assert_eq!(
            c,
            [0x80, 0x01, 0, 0, 0, 20, 0, 0, 0x01, 0x7E, 0, 0, 0, 1, 0, 0x0B, 3, 0, 0x02, 0]
        );
        assert_eq!(&read_command(0)[17..], &[1, 0, 0]);
        assert_eq!(&read_command(23)[17..], &[0, 0, 0x80]);
    }

    fn read_response(digests: &[&[u8]]) -> Vec<u8> {
        let mut r = vec![0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        r.extend_from_slice(&7u32.to_be_bytes()); // update counter
        r.extend_from_slice(&1u32.to_be_bytes());
        r.extend_from_slice(&[0, 0x0B, 3, 0, 2, 0]);
        r.extend_from_slice(&(digests.len() as u32).to_be_bytes());
        for d in digests {
            r.extend_from_slice(&(d.len() as u16).to_be_bytes());
            r.extend_from_slice(d);
        }
        let n = r.len() as u32;
        r[2..6].copy_from_slice(&n.to_be_bytes());
        r
    }

    #[test]
    fn a_read_response_gives_its_digest_and_bad_ones_are_errors() {
        let d = sha256(b"pcr");
        assert_eq!(parse_read_response(&read_response(&[&d])).unwrap(), d);
        let e = parse_read_response(&read_response(&[])).unwrap_err();
        assert!(e.to_string().contains("no SHA-256 bank"), "{e}");
        let e = parse_read_response(&read_response(&[&d[..20]])).unwrap_err();
        assert!(e.to_string().contains("not a SHA-256"), "{e}");
        let mut r = read_response(&[&d]);
        r[9] = 0x84; // TPM_RC_VALUE
        let e = parse_read_response(&r).unwrap_err();
        assert!(e.to_string().contains("0x84"), "{e}");
        let r = read_response(&[&d]);
        let e = parse_read_response(&r[..r.len() - 1]).unwrap_err();
        assert!(e.to_string().contains("says"), "{e}");
        assert!(parse_read_response(&[0x80]).is_err());
    }

    #[test]
    fn no_device_is_an_error_naming_both_paths() {
        let e = DeviceTpm::open(Path::new("/nonexistent-dev")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("/nonexistent-dev/tpmrm0"), "{text}");
        assert!(text.contains("/nonexistent-dev/tpm0"), "{text}");
    }

    #[test]
    fn the_fake_extends_as_a_tpm_does() {
        let mut t = FakeTpm::new();
        let start = [0xff; 32];
        t.set(17, start);
        let d = sha256(b"x");
        t.extend(17, &d).unwrap();
        assert_eq!(t.read(17).unwrap(), extend(&start, &d));
        assert_eq!(t.read(9).unwrap(), [0; 32]);
        t.fail_after(1);
        assert!(t.extend(9, &d).is_err());
        assert_eq!(t.extends(), vec![(17, d)]);
    }
}
