//! Reading a compiled index (`/init`'s side): bounds-checked, every name
//! checked by the name rules, nothing trusted before the header is.

use std::collections::{BTreeMap, BTreeSet};

use super::{fnv1a, CompiledError, CompiledIndex, FORMAT_VERSION, MAGIC, MAX_INDEX_BYTES};
use crate::depmod::{AliasTable, Compression, DepIndex, ModuleEntry, SoftDep};
use crate::name::ModuleName;

/// Decodes a compiled index. With `running`, the kernel release it was
/// built for must be that one. The header is checked first (magic, format
/// version, release, body length and checksum), so a file from another
/// format or kernel is refused by what it is, not by where it breaks.
pub fn decode(bytes: &[u8], running: Option<&str>) -> Result<CompiledIndex, CompiledError> {
    if bytes.len() as u64 > MAX_INDEX_BYTES {
        return Err(CompiledError::TooLarge {
            bytes: bytes.len() as u64,
        });
    }
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(CompiledError::Magic);
    }
    let mut r = Reader {
        bytes,
        at: MAGIC.len(),
    };
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(CompiledError::Version {
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    let release = r.str()?.to_owned();
    if let Some(running) = running.filter(|r| *r != release) {
        return Err(CompiledError::Release {
            index: release,
            running: running.to_owned(),
        });
    }
    let body_len = r.u32()? as usize;
    let checksum = r.u64()?;
    let body_start = r.at;
    if bytes.len() - body_start != body_len {
        return Err(CompiledError::Truncated {
            at: bytes.len().min(body_start + body_len),
        });
    }
    let found = fnv1a(&bytes[body_start..]);
    if found != checksum {
        return Err(CompiledError::Checksum {
            found,
            expected: checksum,
        });
    }

    let n = r.count()?;
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        names.push(ModuleName::new(r.str()?).map_err(CompiledError::BadName)?);
    }
    let mut index = DepIndex::default();

    for _ in 0..r.count()? {
        let name = r.name(&names)?;
        let path = r.str()?.to_owned();
        let at = r.at;
        let compression = match r.byte()? {
            0 => Compression::None,
            1 => Compression::Xz,
            2 => Compression::Zstd,
            3 => Compression::Gzip,
            byte => return Err(CompiledError::Compression { at, byte }),
        };
        let deps = r.names(&names)?;
        index.modules.insert(
            name.clone(),
            ModuleEntry {
                name,
                path,
                compression,
                deps,
            },
        );
    }
    index.builtin = r.names(&names)?.into_iter().collect();
    for _ in 0..r.count()? {
        let name = r.name(&names)?;
        let sd = SoftDep {
            pre: r.strs()?,
            post: r.strs()?,
            ignored: r.strs()?,
        };
        index.softdeps.insert(name, sd);
    }
    index.aliases = r.table(&names)?;
    index.builtin_aliases = r.table(&names)?;
    for _ in 0..r.count()? {
        let key = r.str()?.to_owned();
        let modules = r.names(&names)?;
        index.resolved.insert(key, modules);
    }
    let mut params = BTreeMap::new();
    for _ in 0..r.count()? {
        let name = r.name(&names)?;
        let list: BTreeSet<String> = r.strs()?.into_iter().collect();
        params.insert(name, list);
    }
    if r.at != bytes.len() {
        return Err(CompiledError::Trailing { at: r.at });
    }
    Ok(CompiledIndex {
        release,
        index,
        params,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CompiledError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(CompiledError::Truncated { at: self.at })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, CompiledError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, CompiledError> {
        let mut w = [0u8; 4];
        w.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(w))
    }

    fn u64(&mut self) -> Result<u64, CompiledError> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(w))
    }

    /// A count of items of at least 4 bytes each: one the rest of the file
    /// cannot hold is a truncation, found before anything is allocated.
    fn count(&mut self) -> Result<usize, CompiledError> {
        let at = self.at;
        let n = self.u32()? as usize;
        if n > (self.bytes.len() - self.at) / 4 {
            return Err(CompiledError::Truncated { at });
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<&'a str, CompiledError> {
        let len = self.u32()? as usize;
        let at = self.at;
        std::str::from_utf8(self.take(len)?).map_err(|_| CompiledError::NotUtf8 { at })
    }

    fn strs(&mut self) -> Result<Vec<String>, CompiledError> {
        let n = self.count()?;
        (0..n).map(|_| self.str().map(str::to_owned)).collect()
    }

    fn name(&mut self, names: &[ModuleName]) -> Result<ModuleName, CompiledError> {
        let at = self.at;
        let index = self.u32()?;
        names
            .get(index as usize)
            .cloned()
            .ok_or(CompiledError::NameRef { at, index })
    }

    fn names(&mut self, names: &[ModuleName]) -> Result<Vec<ModuleName>, CompiledError> {
        let n = self.count()?;
        (0..n).map(|_| self.name(names)).collect()
    }

    fn table(&mut self, names: &[ModuleName]) -> Result<AliasTable, CompiledError> {
        let mut table = AliasTable::default();
        let bad = |pattern: &str| CompiledError::Pattern {
            pattern: pattern.to_owned(),
        };
        for _ in 0..self.count()? {
            let alias = self.str()?;
            for module in self.names(names)? {
                table.push(alias, module).map_err(|_| bad(alias))?;
            }
        }
        for _ in 0..self.count()? {
            let pattern = self.str()?;
            let module = self.name(names)?;
            table.push(pattern, module).map_err(|_| bad(pattern))?;
        }
        // Already in lookup order: a stable sort of sorted input is a scan.
        table.sort_globs();
        Ok(table)
    }
}
