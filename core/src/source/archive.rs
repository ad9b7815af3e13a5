//! Sources uploaded as a tar archive (plain or gzip-compressed): read into memory under the
//! same rules as any source — every path relative and inside the root, links resolved inside
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

/// The files of a tar archive (gzip-compressed or not), path → contents.
pub fn files_from_tar(archive: &[u8], limits: &LimitsConfig) -> Result<BTreeMap<String, FileBytes>, SourceError> {
    let reader: Box<dyn Read + '_> = if archive.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(archive))
    } else {
        Box::new(archive)
    };
    let mut tar = tar::Archive::new(reader);
    let mut files: BTreeMap<String, FileBytes> = BTreeMap::new();
    // Link path → the path it names (normalised, inside the archive).
    let mut links: Vec<(String, String)> = Vec::new();
    let mut total: u64 = 0;
    for entry in tar.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let raw = entry.path_bytes().into_owned();
        let raw = String::from_utf8(raw)
            .map_err(|_| SourceError::InvalidPath { path: "(non-UTF-8 name)".into(), reason: "not UTF-8" })?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        }
        let path = normalize_path(raw.trim_end_matches('/'))?;
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
            // A symlink is relative to its directory; a hard link names a path from the root.
            let base = if kind.is_symlink() { path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("") } else { "" };
            let resolved =
                resolve_inside(base, &target).ok_or_else(|| SourceError::SymlinkEscape { path: path.clone() })?;
            links.push((path, resolved));
            continue;
        }
        if !kind.is_file() && !kind.is_contiguous() {
            return Err(SourceError::InvalidPath { path, reason: "not a regular file, directory or link" });
        }
        let size = entry.size();
        if size > limits.max_file_bytes {
            return Err(SourceError::FileTooLarge { path, size, limit: limits.max_file_bytes });
        }
        total = total.saturating_add(size);
        if total > limits.max_source_bytes {
            return Err(SourceError::TooLarge { limit: limits.max_source_bytes });
        }
        if files.len() as u64 >= limits.max_source_files {
            return Err(SourceError::TooManyFiles { limit: limits.max_source_files });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut entry).take(size).read_to_end(&mut bytes).map_err(unreadable)?;
        if files.insert(path.clone(), FileBytes(Bytes::from(bytes))).is_some() {
            return Err(SourceError::DuplicatePath(path));
        }
    }
    resolve_links(&mut files, &links, limits)?;
    Ok(files)
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
