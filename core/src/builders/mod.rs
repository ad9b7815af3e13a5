//! The platform builders that ship with the engine. `javascript` (rolldown, oxc,
//! lightningcss, grass, image codecs) and `flutter` are cargo features, on by default: a host
//! that builds only static sites (or only Flutter apps) links neither rolldown nor rav1e.

#[cfg(feature = "flutter")]
pub mod flutter;
pub mod html;
#[cfg(feature = "javascript")]
pub mod javascript;
mod static_site;

#[cfg(feature = "flutter")]
pub use flutter::FlutterBuilder;
#[cfg(feature = "javascript")]
pub use javascript::JavascriptBuilder;
pub use static_site::StaticSiteBuilder;

/// Files no release publishes, at any depth, whatever the app type: by convention they hold
/// secrets (`.env` and `.env.*` — Vite's env files, `.env.production` included —, an `.npmrc`
/// or `.yarnrc.yml` with a registry token, `.netrc`).
pub fn never_published(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name == ".env" || name.starts_with(".env.") || matches!(name, ".npmrc" | ".yarnrc" | ".yarnrc.yml" | ".netrc")
}

impl crate::context::PlatformRegistry {
    /// The builders that ship with the engine (those compiled in).
    pub fn with_defaults() -> Self {
        let mut registry = Self::default();
        registry.register(std::sync::Arc::new(StaticSiteBuilder));
        #[cfg(feature = "javascript")]
        registry.register(std::sync::Arc::new(JavascriptBuilder));
        #[cfg(feature = "flutter")]
        registry.register(std::sync::Arc::new(FlutterBuilder));
        registry
    }
}
