//! Output optimisation for web apps: PNGs shrunk losslessly, image format variants,
//! and a service worker that precaches the hashed outputs.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

/// Image work to do on an output directory.
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    /// Shrink PNGs losslessly (oxipng).
    pub optimize: bool,
    /// Extra formats to write next to each PNG/JPEG (`webp`, `avif`).
    pub formats: Vec<String>,
}

/// What image optimisation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageReport {
    pub optimized: usize,
    pub bytes_saved: u64,
    pub variants: usize,
    /// Formats asked for that this build cannot produce.
    pub unsupported: Vec<String>,
}

fn images(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for entry in rd.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => {
                    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
                    if matches!(ext.as_str(), "png" | "jpg" | "jpeg") {
                        out.push(path);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// An image format written next to the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VariantFormat {
    /// Lossless: the variant shows exactly the original's pixels.
    Webp,
    /// Lossy at a high quality: AVIF's point is size, and lossless AVIF is often larger than PNG.
    Avif,
}

impl VariantFormat {
    fn parse(name: &str) -> Option<VariantFormat> {
        match name.to_ascii_lowercase().as_str() {
            "webp" => Some(VariantFormat::Webp),
            "avif" => Some(VariantFormat::Avif),
            _ => None,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            VariantFormat::Webp => "webp",
            VariantFormat::Avif => "avif",
        }
    }

    fn encode(self, rgba: &image::RgbaImage) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let written = match self {
            VariantFormat::Webp => rgba.write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut out)),
            // Speed 8 of 10: a build cannot spend seconds per image; quality 80 is visually lossless for the web.
            VariantFormat::Avif => {
                rgba.write_with_encoder(image::codecs::avif::AvifEncoder::new_with_speed_quality(&mut out, 8, 80))
            }
        };
        written.ok().map(|_| out)
    }
}

/// Optimise the images under `dir` in parallel.
pub fn optimize_images(dir: &Path, options: &ImageOptions) -> std::io::Result<ImageReport> {
    let mut report = ImageReport::default();
    let mut variants_wanted = Vec::new();
    for format in &options.formats {
        match VariantFormat::parse(format) {
            Some(variant) if !variants_wanted.contains(&variant) => variants_wanted.push(variant),
            Some(_) => {}
            None => report.unsupported.push(format.to_ascii_lowercase()),
        }
    }
    let results: Vec<(bool, u64, usize)> = images(dir)
        .par_iter()
        .map(|path| -> std::io::Result<(bool, u64, usize)> {
            let data = std::fs::read(path)?;
            let is_png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
            let mut optimized = (false, 0);
            if options.optimize && is_png {
                let opts = oxipng::Options::from_preset(2);
                if let Ok(smaller) = oxipng::optimize_from_memory(&data, &opts)
                    && smaller.len() < data.len()
                {
                    std::fs::write(path, &smaller)?;
                    optimized = (true, (data.len() - smaller.len()) as u64);
                }
            }
            let mut variants = 0;
            if !variants_wanted.is_empty()
                && let Ok(img) = image::load_from_memory(&data)
            {
                let rgba = img.to_rgba8();
                for variant in &variants_wanted {
                    if let Some(encoded) = variant.encode(&rgba) {
                        std::fs::write(path.with_extension(variant.extension()), &encoded)?;
                        variants += 1;
                    }
                }
            }
            Ok((optimized.0, optimized.1, variants))
        })
        .collect::<std::io::Result<_>>()?;
    for (optimized, saved, variants) in results {
        report.optimized += usize::from(optimized);
        report.bytes_saved += saved;
        report.variants += variants;
    }
    Ok(report)
}

/// The script that registers the service worker, for the page's body.
pub const SW_REGISTRATION: &str = "<script>if(\"serviceWorker\" in navigator){addEventListener(\"load\",function(){navigator.serviceWorker.register(\"./sw.js\")})}</script>";

/// Write `sw.js`: precache every output (not maps or precompressed variants) under a
/// cache named for this build, and drop the caches of earlier builds when it activates.
pub fn write_service_worker(dir: &Path, build_tag: &str) -> std::io::Result<usize> {
    let mut files = crate::output::list_artifacts(dir)?
        .into_iter()
        .map(|f| f.path)
        .filter(|p| !(p == "sw.js" || p.ends_with(".map") || p.ends_with(".gz") || p.ends_with(".br")))
        .map(|p| if p == "index.html" { "./".to_string() } else { format!("./{p}") })
        .collect::<Vec<_>>();
    files.sort();
    let list = serde_json::to_string(&files).map_err(std::io::Error::other)?;
    let cache = serde_json::to_string(&format!("workz-{build_tag}")).map_err(std::io::Error::other)?;
    let script = format!(
        "// Generated by workz-build: precaches this build's files; a new build gets a new cache.\n\
const CACHE = {cache};\n\
const PRECACHE = {list};\n\
self.addEventListener(\"install\", (event) => {{\n\
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(PRECACHE)).then(() => self.skipWaiting()));\n\
}});\n\
self.addEventListener(\"activate\", (event) => {{\n\
  event.waitUntil(caches.keys().then((keys) => Promise.all(keys.filter((k) => k.startsWith(\"workz-\") && k !== CACHE).map((k) => caches.delete(k)))).then(() => self.clients.claim()));\n\
}});\n\
self.addEventListener(\"fetch\", (event) => {{\n\
  if (event.request.method !== \"GET\") return;\n\
  event.respondWith(caches.match(event.request).then((hit) => hit || fetch(event.request)));\n\
}});\n"
    );
    std::fs::write(dir.join("sw.js"), script)?;
    Ok(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path) {
        // A 64x64 image with flat areas: oxipng has room to shrink it.
        let img =
            image::RgbaImage::from_fn(64, 64, |x, y| image::Rgba([(x / 16 * 60) as u8, (y / 16 * 60) as u8, 128, 255]));
        let mut bytes = Vec::new();
        image::DynamicImage::ImageRgba8(img)
            .write_with_encoder(image::codecs::png::PngEncoder::new_with_quality(
                &mut bytes,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::NoFilter,
            ))
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Width and height from an AVIF file's `ispe` (image spatial extents) box.
    fn avif_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
        let at = bytes.windows(4).position(|w| w == b"ispe")?;
        let field = |o: usize| Some(u32::from_be_bytes(bytes.get(at + o..at + o + 4)?.try_into().ok()?));
        Some((field(8)?, field(12)?))
    }

    #[test]
    fn pngs_shrink_losslessly_and_get_webp_and_avif_variants() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logo.png");
        png(&path);
        let before = image::open(&path).unwrap().to_rgba8();
        let size = std::fs::metadata(&path).unwrap().len();
        let formats = vec!["webp".into(), "AVIF".into(), "heic".into(), "webp".into()];
        let report = optimize_images(dir.path(), &ImageOptions { optimize: true, formats }).unwrap();
        assert_eq!(report.optimized, 1);
        assert!(std::fs::metadata(&path).unwrap().len() < size);
        assert_eq!(image::open(&path).unwrap().to_rgba8(), before, "lossless");
        assert_eq!(report.variants, 2);
        assert_eq!(image::open(dir.path().join("logo.webp")).unwrap().to_rgba8(), before);
        let avif = std::fs::read(dir.path().join("logo.avif")).unwrap();
        assert_eq!(&avif[4..12], b"ftypavif", "an AVIF file");
        assert_eq!(avif_dimensions(&avif), Some((64, 64)));
        assert_eq!(report.unsupported, vec!["heic"]);
    }

    #[test]
    fn the_service_worker_precaches_outputs_under_a_versioned_cache() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("assets")).unwrap();
        for f in ["index.html", "assets/app-1.js", "assets/app-1.js.map", "assets/app-1.js.gz"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        assert_eq!(write_service_worker(dir.path(), "abc123").unwrap(), 2);
        let sw = std::fs::read_to_string(dir.path().join("sw.js")).unwrap();
        assert!(sw.contains("\"workz-abc123\"") && sw.contains("[\"./\",\"./assets/app-1.js\"]"), "{sw}");
    }
}
