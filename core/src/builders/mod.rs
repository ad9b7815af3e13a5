//! The platform builders that ship with the engine.

mod static_site;

pub use static_site::StaticSiteBuilder;
