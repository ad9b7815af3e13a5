//! The `server` section: `workz-build serve`.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Ours: the HTTP service (`workz-build serve`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerConfig {
    /// `host:port`; loopback unless said otherwise.
    pub listen: String,
    /// The bearer token every call needs (else `WORKZ_API_TOKEN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The largest upload (a tar archive of an app), in bytes; more is refused with 413.
    pub max_upload_bytes: u64,
    /// Let `/metrics` be scraped without the token.
    pub metrics_open: bool,
    /// Browser origins (`https://admin.example.com`) allowed to call the API from their
    /// pages (CORS); none by default.
    pub cors_origins: Vec<String>,
    /// The directory under which `POST /api/builds {"path"}` may name apps; none by default
    /// (only uploads are taken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_root: Option<std::path::PathBuf>,
}

// The token never reaches a log through `{:?}`.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("metrics_open", &self.metrics_open)
            .field("cors_origins", &self.cors_origins)
            .field("source_root", &self.source_root)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8470".into(),
            token: None,
            max_upload_bytes: 100 << 20,
            metrics_open: false,
            cors_origins: Vec::new(),
            source_root: None,
        }
    }
}

impl ServerConfig {
    pub(crate) fn validate(&self, file: &str) -> Result<(), ConfigError> {
        if self.token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::invalid(file, "server.token", "expected at least 16 characters"));
        }
        if self.source_root.as_ref().is_some_and(|root| !root.is_absolute()) {
            return Err(ConfigError::invalid(file, "server.sourceRoot", "expected an absolute directory"));
        }
        for (i, origin) in self.cors_origins.iter().enumerate() {
            let scheme = origin.split_once("://");
            let valid = matches!(scheme, Some(("http" | "https", host)) if !host.is_empty() && !host.contains('/'));
            if !valid {
                return Err(ConfigError::invalid(
                    file,
                    format!("server.corsOrigins[{i}]"),
                    format!(
                        "expected an origin such as https://admin.example.com (scheme and host, no path), found {origin:?}"
                    ),
                ));
            }
        }
        Ok(())
    }
}
