//! Reading the depmod text files into a [`DepIndex`]: the host's side
//! (`kmodinit build`, `kmodinit plan`, the tests). `/init` reads the compiled
//! index the image builder writes instead ([`crate::compiled`]), so this
//! file and the parsers it calls are built only with the `depmod-text`
//! feature, which `/init` leaves off.

use std::io::Read;
use std::path::Path;

use super::{alias, builtin, dep, modinfo, softdep};
use super::{DepIndex, IndexError, IndexErrorKind, MAX_INDEX_FILE_BYTES};

/// Lines worth reading: 1-based number and text, without blanks and comments.
pub(crate) fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, l)| {
        let l = l.trim_ascii();
        (!l.is_empty() && !l.starts_with('#')).then_some((i + 1, l))
    })
}

/// Reads `dir/name` (at most [`MAX_INDEX_FILE_BYTES`]); `Ok(None)` if it
/// does not exist.
pub(super) fn read_index_bytes(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, IndexError> {
    let path = dir.join(name);
    let file_label = path.display().to_string();
    let io_err = |e: std::io::Error| {
        IndexErrorKind::Io {
            error: e.kind(),
            message: e.to_string(),
        }
        .at(&file_label, 0)
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_INDEX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_INDEX_FILE_BYTES {
        return Err(IndexErrorKind::TooLarge.at(&file_label, 0));
    }
    Ok(Some(bytes))
}

/// Reads `dir/name` as UTF-8 text; `Ok(None)` if it does not exist.
pub(super) fn read_index_file(dir: &Path, name: &str) -> Result<Option<String>, IndexError> {
    let Some(bytes) = read_index_bytes(dir, name)? else {
        return Ok(None);
    };
    let file_label = dir.join(name).display().to_string();
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        IndexErrorKind::NotUtf8.at(&file_label, line)
    })
}

impl DepIndex {
    /// Reads the depmod files of `dir` (e.g. `/lib/modules/6.1.0-56-amd64`).
    /// `modules.dep` is required; the others are optional. With [`prune()`],
    /// the only reading of depmod files in this crate.
    pub fn load(dir: &Path) -> Result<DepIndex, IndexError> {
        let dep = read_index_file(dir, "modules.dep")?.ok_or_else(|| {
            IndexErrorKind::Missing.at(&dir.join("modules.dep").display().to_string(), 0)
        })?;
        let label = |n: &str| dir.join(n).display().to_string();
        let mut index = DepIndex::default();
        dep::parse_dep(&dep, &label("modules.dep"), &mut index.modules)?;
        if let Some(text) = read_index_file(dir, "modules.builtin")? {
            builtin::parse_builtin(&text, &label("modules.builtin"), &mut index.builtin)?;
        }
        if let Some(text) = read_index_file(dir, "modules.softdep")? {
            softdep::parse_softdep(&text, &label("modules.softdep"), &mut index.softdeps)?;
        }
        if let Some(text) = read_index_file(dir, "modules.alias")? {
            alias::parse_alias(&text, &label("modules.alias"), &mut index.aliases)?;
        }
        if let Some(bytes) = read_index_bytes(dir, "modules.builtin.modinfo")? {
            index.add_builtin_modinfo(&bytes, &label("modules.builtin.modinfo"))?;
        }
        Ok(index)
    }

    /// Adds the aliases of builtin modules from the bytes of
    /// `modules.builtin.modinfo` (the pure part of what [`DepIndex::load`]
    /// does with that file), and counts their modules as builtin; errors
    /// name the file as `file` and the record by its number.
    pub fn add_builtin_modinfo(&mut self, bytes: &[u8], file: &str) -> Result<(), IndexError> {
        modinfo::parse_builtin_modinfo(bytes, file, &mut self.builtin_aliases, &mut self.builtin)
    }

    /// The pure twin of [`DepIndex::load`]: the texts of `modules.dep`,
    /// `modules.builtin`, `modules.softdep` and `modules.alias` (pass `""`
    /// for a missing file). Errors name the file by its base name.
    pub fn parse(
        dep: &str,
        builtin: &str,
        softdep: &str,
        alias: &str,
    ) -> Result<DepIndex, IndexError> {
        let mut index = DepIndex::default();
        dep::parse_dep(dep, "modules.dep", &mut index.modules)?;
        builtin::parse_builtin(builtin, "modules.builtin", &mut index.builtin)?;
        softdep::parse_softdep(softdep, "modules.softdep", &mut index.softdeps)?;
        alias::parse_alias(alias, "modules.alias", &mut index.aliases)?;
        Ok(index)
    }
}
