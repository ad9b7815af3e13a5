//! Files the engine writes and paths it compares, handled the same way everywhere: atomic
//! replacement (temp file + rename) and lexical normalisation.

use std::path::{Component, Path, PathBuf};

/// Write `bytes` to `path` through a temp file in the same directory and a rename, so a
/// reader sees the old file or the new one, never a part.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("a path without a directory"))?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}

/// Lexically resolve `.` and `..` (the path need not exist).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
