//! The platform builders that ship with the engine.

pub mod javascript;
mod static_site;

pub use javascript::JavascriptBuilder;
pub use static_site::StaticSiteBuilder;
