//! What every error says about itself, whichever module (or third-party builder) it comes
//! from: a stable code, a [`Category`] (who acts), a [`Family`] (the exception class in
//! Python, `family` in C and Node), a hint and whether a retry may help — the
//! [`ErrorCode`] trait — and [`ErrorReport`], the error as data that crosses every boundary.

use serde::{Deserialize, Serialize};

/// Who has to act on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The app's sources or configuration are wrong: the user fixes them.
    User,
    /// A build tool is missing, failed or misbehaved.
    Toolchain,
    /// The machine, the network or a storage backend failed.
    Infrastructure,
    /// A bug in the engine.
    Internal,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::User => "user",
            Category::Toolchain => "toolchain",
            Category::Infrastructure => "infrastructure",
            Category::Internal => "internal",
        }
    }
}

/// What kind of failure an error code names: the exception class in Python, `family` in C
/// and Node. Coarser than the code, finer than the [`Category`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Engine or app configuration, or the request itself.
    Config,
    /// The app's sources: unreadable, unsafe, invalid or unsupported.
    Validation,
    /// npm / pub dependencies could not be resolved or installed.
    Dependency,
    /// A build tool is missing, failed to start or failed, or the host cannot build the target.
    Toolchain,
    /// The build ran and produced nothing usable.
    Build,
    Timeout,
    Cancelled,
    /// The cache or the artifact store failed.
    Storage,
    /// A bug in the engine (panics included).
    Internal,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Config => "config",
            Family::Validation => "validation",
            Family::Dependency => "dependency",
            Family::Toolchain => "toolchain",
            Family::Build => "build",
            Family::Timeout => "timeout",
            Family::Cancelled => "cancelled",
            Family::Storage => "storage",
            Family::Internal => "internal",
        }
    }
}

/// Implemented by every module's error enum, and by a [`crate::PlatformBuilder`]'s own
/// errors (carried as `Error::Platform`), so codes, families and hints live with the errors.
pub trait ErrorCode: std::error::Error + Send + Sync + 'static {
    /// Stable snake_case code, identical in every binding.
    fn code(&self) -> &'static str;
    fn category(&self) -> Category;
    fn family(&self) -> Family;
    /// What the user can do about it (the troubleshooting guide's remedy where one applies).
    fn hint(&self) -> Option<String> {
        None
    }
    /// Whether running the failed stage again may succeed (network, busy machine).
    fn is_retryable(&self) -> bool {
        false
    }
    /// The serializable form carried by results, events and bindings.
    fn report(&self) -> ErrorReport {
        ErrorReport {
            code: self.code().to_string(),
            category: self.category(),
            family: self.family(),
            message: self.to_string(),
            hint: self.hint(),
        }
    }
}

/// An error as data: what crosses the FFI boundaries and lands in `BuildResult.error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub code: String,
    pub category: Category,
    pub family: Family,
    pub message: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for ErrorReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]", self.message, self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialized_ones() {
        for category in [Category::User, Category::Toolchain, Category::Infrastructure, Category::Internal] {
            assert_eq!(serde_json::to_value(category).unwrap(), category.as_str());
        }
        for family in [
            Family::Config,
            Family::Validation,
            Family::Dependency,
            Family::Toolchain,
            Family::Build,
            Family::Timeout,
            Family::Cancelled,
            Family::Storage,
            Family::Internal,
        ] {
            assert_eq!(serde_json::to_value(family).unwrap(), family.as_str());
        }
    }
}
