//! The platform builders that ship with the engine.

pub mod flutter;
pub mod javascript;
mod static_site;

pub use flutter::FlutterBuilder;
pub use javascript::JavascriptBuilder;
pub use static_site::StaticSiteBuilder;
