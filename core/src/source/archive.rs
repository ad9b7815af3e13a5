//! Sources uploaded as a tar archive (plain or gzip-compressed) or a zip archive: read into
//! memory under the same rules as any source — every path relative and inside the root, links resolved inside
//! the archive or refused, the size and count limits checked before anything is read.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;

use super::{FileBytes, SourceError, normalize_path};
use crate::config::LimitsConfig;

/// Links are followed at most this many times (a link to a link …).
const MAX_LINK_HOPS: usize = 8;

fn unreadable(message: impl std::fmt::Display) -> SourceError {
    SourceError::Read { path: "(upload)".into(), source: std::io::Error::other(message.to_string()) }
}

/// What an archive holds so far, checked entry by entry against the limits.
struct Intake<'a> {
    limits: &'a LimitsConfig,
    files: BTreeMap<String, FileBytes>,
    /// Link path → the path it names (normalised, inside the archive).
    links: Vec<(String, String)>,
    total: u64,
}

impl<'a> Intake<'a> {
    fn new(limits: &'a LimitsConfig) -> Self {
        Intake { limits, files: BTreeMap::new(), links: Vec::new(), total: 0 }
    }

    /// A raw entry name as UTF-8, normalised (relative, inside the root).
    fn path(raw: &[u8]) -> Result<String, SourceError> {
        let raw = std::str::from_utf8(raw)
            .map_err(|_| SourceError::InvalidPath { path: "(non-UTF-8 name)".into(), reason: "not UTF-8" })?;
        normalize_path(raw.trim_end_matches('/'))
    }

    /// A link at `path` to `target`: a symlink's target is relative to its directory, a
    /// hard link's names a path from the root.
    fn link(&mut self, path: String, target: &str, symbolic: bool) -> Result<(), SourceError> {
        let base = if symbolic { path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("") } else { "" };
        let resolved = resolve_inside(base, target).ok_or_else(|| SourceError::SymlinkEscape { path: path.clone() })?;
        self.links.push((path, resolved));
        Ok(())
    }

    /// A file that says it has `size` bytes: the limits are checked before a byte is read,
    /// and no more than `size` bytes are read (an archive that lies is not believed further).
    fn file(&mut self, path: String, size: u64, reader: impl Read) -> Result<(), SourceError> {
        let limits = self.limits;
        if size > limits.max_file_bytes {
            return Err(SourceError::FileTooLarge { path, size, limit: limits.max_file_bytes });
        }
        self.total = self.total.saturating_add(size);
        if self.total > limits.max_source_bytes {
            return Err(SourceError::TooLarge { limit: limits.max_source_bytes });
        }
        if self.files.len() as u64 >= limits.max_source_files {
            return Err(SourceError::TooManyFiles { limit: limits.max_source_files });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader.take(size).read_to_end(&mut bytes).map_err(unreadable)?;
        if self.files.insert(path.clone(), FileBytes(Bytes::from(bytes))).is_some() {
            return Err(SourceError::DuplicatePath(path));
        }
        Ok(())
    }

    fn finish(mut self) -> Result<BTreeMap<String, FileBytes>, SourceError> {
        resolve_links(&mut self.files, &self.links, self.limits)?;
        Ok(self.files)
    }
}

/// The files of a tar archive (gzip-compressed or not), path → contents.
pub fn files_from_tar(archive: &[u8], limits: &LimitsConfig) -> Result<BTreeMap<String, FileBytes>, SourceError> {
    let reader: Box<dyn Read + '_> = if archive.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(archive))
    } else {
        Box::new(archive)
    };
    let mut tar = tar::Archive::new(reader);
    let mut intake = Intake::new(limits);
    for entry in tar.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        }
        let path = Intake::path(&entry.path_bytes())?;
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
            intake.link(path, &target, kind.is_symlink())?;
        } else if kind.is_file() || kind.is_contiguous() {
            let size = entry.size();
            intake.file(path, size, &mut entry)?;
        } else {
            return Err(SourceError::InvalidPath { path, reason: "not a regular file, directory or link" });
        }
    }
    intake.finish()
}

/// Unix file-type bits of a zip entry's external attributes.
const UNIX_TYPE: u32 = 0o170_000;
const UNIX_LINK: u32 = 0o120_000;
const UNIX_FILE: u32 = 0o100_000;

/// The files of a zip archive (stored or deflated), path → contents. Names are taken as
/// written (a `..` is refused, not quietly dropped); a Unix symlink entry (its content is
/// the target) is resolved inside the archive or refused.
pub fn files_from_zip(archive: &[u8], limits: &LimitsConfig) -> Result<BTreeMap<String, FileBytes>, SourceError> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).map_err(unreadable)?;
    let mut intake = Intake::new(limits);
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(unreadable)?;
        if entry.is_dir() {
            continue;
        }
        let path = Intake::path(entry.name_raw())?;
        let kind = entry.unix_mode().map(|mode| mode & UNIX_TYPE);
        match kind {
            Some(UNIX_LINK) => {
                let mut target = String::new();
                (&mut entry).take(4096).read_to_string(&mut target).map_err(unreadable)?;
                intake.link(path, &target, true)?;
            }
            None | Some(0) | Some(UNIX_FILE) => {
                let size = entry.size();
                intake.file(path, size, &mut entry)?;
            }
            Some(_) => return Err(SourceError::InvalidPath { path, reason: "not a regular file, directory or link" }),
        }
    }
    intake.finish()
}

/// `target` seen from directory `base`, normalised; `None` when it leaves the root.
fn resolve_inside(base: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Give each link the contents it names: a file, or (a link to a directory) every file under it.
fn resolve_links(
    files: &mut BTreeMap<String, FileBytes>,
    links: &[(String, String)],
    limits: &LimitsConfig,
) -> Result<(), SourceError> {
    let redirect: BTreeMap<&str, &str> = links.iter().map(|(l, t)| (l.as_str(), t.as_str())).collect();
    for (link, target) in links {
        let mut target = target.as_str();
        for _ in 0..MAX_LINK_HOPS {
            match redirect.get(target) {
                Some(next) => target = next,
                None => break,
            }
        }
        let added: Vec<(String, FileBytes)> = match files.get(target) {
            Some(bytes) => vec![(link.clone(), bytes.clone())],
            None => {
                let prefix = format!("{target}/");
                files
                    .range(prefix.clone()..)
                    .take_while(|(path, _)| path.starts_with(&prefix))
                    .map(|(path, bytes)| (format!("{link}/{}", &path[prefix.len()..]), bytes.clone()))
                    .collect()
            }
        };
        if added.is_empty() {
            return Err(SourceError::InvalidPath { path: link.clone(), reason: "a link to nothing in the archive" });
        }
        for (path, bytes) in added {
            if files.len() as u64 >= limits.max_source_files {
                return Err(SourceError::TooManyFiles { limit: limits.max_source_files });
            }
            if files.insert(path.clone(), bytes).is_some() {
                return Err(SourceError::DuplicatePath(path));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, body, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            // Raw names, so that `..` and absolute paths reach the reader as a hostile tool writes them.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            header.set_cksum();
            builder.append(&header, *body).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// A zip archive of `(name, unix mode, contents)`, names written raw (`..` included).
    fn zip_of(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        // Written by hand (stored entries, a central directory): the zip crate's writer would
        // need features we do not compile, and it cleans names a hostile tool would not.
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, mode, body) in entries {
            let crc = crc32(body);
            let offset = out.len() as u32;
            let mut local = vec![0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            for v in [crc, body.len() as u32, body.len() as u32] {
                local.extend(v.to_le_bytes());
            }
            local.extend((name.len() as u16).to_le_bytes());
            local.extend(0u16.to_le_bytes());
            local.extend(name.as_bytes());
            out.extend(local);
            out.extend(*body);
            let mut header = vec![0x50, 0x4b, 0x01, 0x02, 20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            for v in [crc, body.len() as u32, body.len() as u32] {
                header.extend(v.to_le_bytes());
            }
            header.extend((name.len() as u16).to_le_bytes());
            header.extend([0u8; 8]);
            header.extend((mode << 16).to_le_bytes());
            header.extend(offset.to_le_bytes());
            header.extend(name.as_bytes());
            central.extend(header);
        }
        let at = out.len() as u32;
        let count = entries.len() as u16;
        out.extend(&central);
        out.extend([0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0]);
        out.extend(count.to_le_bytes());
        out.extend(count.to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(at.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for b in bytes {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn zip_files_links_and_escapes() {
        let limits = LimitsConfig::default();
        let archive = zip_of(&[
            ("site/", 0o040_755, b""),
            ("site/index.html", 0o100_644, b"<h1>hi</h1>"),
            ("site/home.html", 0o120_777, b"index.html"),
        ]);
        let files = files_from_zip(&archive, &limits).unwrap();
        let paths: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(paths, ["site/home.html", "site/index.html"]);
        assert_eq!(files["site/home.html"].0.as_ref(), b"<h1>hi</h1>");
        let up = zip_of(&[("../evil.sh", 0o100_644, b"x")]);
        assert_eq!(code(files_from_zip(&up, &limits).unwrap_err()), "source_path_invalid");
        let link_out = zip_of(&[("passwd", 0o120_777, b"../../etc/passwd")]);
        assert_eq!(code(files_from_zip(&link_out, &limits).unwrap_err()), "source_symlink_escape");
        let small = LimitsConfig { max_file_bytes: 3, ..LimitsConfig::default() };
        let big = zip_of(&[("big.txt", 0o100_644, b"four")]);
        assert_eq!(code(files_from_zip(&big, &small).unwrap_err()), "source_file_too_large");
        assert_eq!(code(files_from_zip(b"PK not a zip", &limits).unwrap_err()), "source_read_failed");
    }

    fn code(e: SourceError) -> &'static str {
        crate::report::ErrorCode::code(&e)
    }

    #[test]
    fn files_links_inside_and_gzip() {
        use tar::EntryType::*;
        let archive = tar_of(&[
            ("./site/", Directory, b"", None),
            ("./site/index.html", Regular, b"<h1>hi</h1>", None),
            ("./site/css/a.css", Regular, b"h1{}", None),
            ("./site/home.html", Symlink, b"", Some("index.html")),
            ("./site/styles", Symlink, b"", Some("css")),
        ]);
        let files = files_from_tar(&archive, &LimitsConfig::default()).unwrap();
        let paths: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(paths, ["site/css/a.css", "site/home.html", "site/index.html", "site/styles/a.css"]);
        assert_eq!(files["site/home.html"].0.as_ref(), b"<h1>hi</h1>");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &archive).unwrap();
        assert_eq!(files_from_tar(&gz.finish().unwrap(), &LimitsConfig::default()).unwrap(), files);
    }

    #[test]
    fn escapes_and_limits_are_refused_with_their_codes() {
        use tar::EntryType::*;
        let limits = LimitsConfig::default();
        let up = tar_of(&[("../evil.sh", Regular, b"x", None)]);
        assert_eq!(code(files_from_tar(&up, &limits).unwrap_err()), "source_path_invalid");
        let absolute = tar_of(&[("/etc/cron.d/x", Regular, b"x", None)]);
        assert_eq!(code(files_from_tar(&absolute, &limits).unwrap_err()), "source_path_invalid");
        let link_out = tar_of(&[("a/passwd", Symlink, b"", Some("../../etc/passwd"))]);
        assert_eq!(code(files_from_tar(&link_out, &limits).unwrap_err()), "source_symlink_escape");
        let absolute_link = tar_of(&[("passwd", Symlink, b"", Some("/etc/passwd"))]);
        assert_eq!(code(files_from_tar(&absolute_link, &limits).unwrap_err()), "source_symlink_escape");
        let device = tar_of(&[("null", Char, b"", None)]);
        assert_eq!(code(files_from_tar(&device, &limits).unwrap_err()), "source_path_invalid");
        let small = LimitsConfig { max_file_bytes: 3, ..LimitsConfig::default() };
        let big = tar_of(&[("big.txt", Regular, b"four", None)]);
        assert_eq!(code(files_from_tar(&big, &small).unwrap_err()), "source_file_too_large");
        let few = LimitsConfig { max_source_files: 1, ..LimitsConfig::default() };
        let two = tar_of(&[("a", Regular, b"1", None), ("b", Regular, b"2", None)]);
        assert_eq!(code(files_from_tar(&two, &few).unwrap_err()), "source_too_many_files");
        assert_eq!(code(files_from_tar(b"not a tar archive at all", &limits).unwrap_err()), "source_read_failed");
    }
}
