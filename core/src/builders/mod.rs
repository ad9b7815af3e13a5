//! The platform builders that ship with the engine.

pub mod flutter;
pub mod javascript;
mod static_site;

pub use flutter::FlutterBuilder;
pub use javascript::JavascriptBuilder;
pub use static_site::StaticSiteBuilder;

impl crate::context::BuilderRegistry {
    /// The builders that ship with the engine.
    pub fn with_defaults() -> Self {
        let mut registry = Self::default();
        registry.register(std::sync::Arc::new(StaticSiteBuilder));
        registry.register(std::sync::Arc::new(JavascriptBuilder));
        registry.register(std::sync::Arc::new(FlutterBuilder));
        registry
    }
}
