//! Work on a build's output directory shared by every platform: precompressed
//! variants, and the hashed file list that becomes the manifest and the cache entry.

use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::cache::ArtifactFile;
use crate::config::Compression;
use crate::digest::Digest;
use crate::store::MANIFEST_FILE;

/// Extensions of text-like files worth precompressing.
const COMPRESSIBLE: &[&str] =
    &["html", "htm", "css", "js", "mjs", "cjs", "json", "map", "svg", "txt", "xml", "wasm", "webmanifest", "ico", "md"];
/// Smaller files gain nothing once headers are counted.
const MIN_COMPRESS_BYTES: u64 = 256;

/// Every regular file under `dir`, relative and `/`-separated, sorted.
fn walk(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let rel = path.strip_prefix(dir).map_err(std::io::Error::other)?;
                let rel =
                    rel.to_str().ok_or_else(|| std::io::Error::other(format!("non-UTF-8 output name {rel:?}")))?;
                out.push((rel.to_string(), path));
            }
            // Symlinks in outputs are not published: they could point anywhere.
        }
    }
    out.sort();
    Ok(out)
}

/// Write `.gz` and/or `.br` variants next to compressible files, keeping only those
/// smaller than the original. Returns how many variants were written.
pub fn precompress(dir: &Path, compression: Compression) -> std::io::Result<usize> {
    if compression == Compression::None {
        return Ok(0);
    }
    let files = walk(dir)?;
    let written: Vec<usize> = files
        .par_iter()
        .filter(|(rel, path)| {
            let ext = Path::new(rel).extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
            COMPRESSIBLE.contains(&ext.as_str()) && std::fs::metadata(path).is_ok_and(|m| m.len() >= MIN_COMPRESS_BYTES)
        })
        .map(|(_, path)| -> std::io::Result<usize> {
            let data = std::fs::read(path)?;
            let mut n = 0;
            if compression.gzip() {
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                enc.write_all(&data)?;
                n += write_if_smaller(path, "gz", &enc.finish()?, data.len())?;
            }
            if compression.brotli() {
                let mut out = Vec::new();
                let params = brotli::enc::BrotliEncoderParams { quality: 11, lgwin: 22, ..Default::default() };
                brotli::BrotliCompress(&mut &data[..], &mut out, &params)?;
                n += write_if_smaller(path, "br", &out, data.len())?;
            }
            Ok(n)
        })
        .collect::<std::io::Result<_>>()?;
    Ok(written.into_iter().sum())
}

fn write_if_smaller(original: &Path, ext: &str, bytes: &[u8], original_len: usize) -> std::io::Result<usize> {
    if bytes.len() >= original_len {
        return Ok(0);
    }
    let mut name = original.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    std::fs::write(PathBuf::from(name), bytes)?;
    Ok(1)
}

/// Hash every output file (in parallel), leaving out the manifest itself.
pub fn list_artifacts(dir: &Path) -> std::io::Result<Vec<ArtifactFile>> {
    let files = walk(dir)?;
    files
        .into_par_iter()
        .filter(|(rel, _)| rel != MANIFEST_FILE)
        .map(|(rel, path)| {
            let mut hasher = blake3::Hasher::new();
            hasher.update_mmap(&path)?;
            let size = std::fs::metadata(&path)?.len();
            Ok(ArtifactFile {
                content_type: content_type(&rel),
                path: rel,
                size,
                blake3: Digest::from(hasher.finalize()),
            })
        })
        .collect()
}

/// The MIME type a web server would send for `path`.
pub fn content_type(path: &str) -> String {
    mime_guess::from_path(path).first_or_octet_stream().essence_str().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_written_only_when_smaller() {
        let dir = tempfile::tempdir().unwrap();
        let big = "body { color: red; }\n".repeat(100);
        std::fs::write(dir.path().join("site.css"), &big).unwrap();
        std::fs::write(dir.path().join("tiny.js"), "x").unwrap();
        std::fs::write(dir.path().join("photo.png"), vec![0u8; 4096]).unwrap();
        assert_eq!(precompress(dir.path(), Compression::Both).unwrap(), 2);
        let gz = std::fs::read(dir.path().join("site.css.gz")).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
        assert_eq!(text, big);
        let br = std::fs::read(dir.path().join("site.css.br")).unwrap();
        let mut out = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut out).unwrap();
        assert_eq!(out, big.as_bytes());
        assert!(!dir.path().join("tiny.js.gz").exists());
        assert!(!dir.path().join("photo.png.gz").exists());
    }

    #[test]
    fn artifacts_are_listed_with_hashes_and_types() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("js")).unwrap();
        std::fs::write(dir.path().join("index.html"), "<p>").unwrap();
        std::fs::write(dir.path().join("js/app.js"), "1").unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), "{}").unwrap();
        let files = list_artifacts(dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "index.html");
        assert_eq!(files[0].content_type, "text/html");
        assert_eq!(files[1].path, "js/app.js");
        assert_eq!(files[1].blake3, Digest::of(b"1"));
    }
}
