//! The one place where engine errors become Python exceptions: a base class with a
//! subclass per error family, each instance carrying `code`, `family`, `hint` and, for a
//! build that ran, its `result` (set by the Python layer).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use workz::{ErrorReport, Family};

create_exception!(workz_build, WorkzBuildError, PyException, "Base class of every error the engine raises.");
create_exception!(workz_build, ConfigError, WorkzBuildError, "Engine or app configuration, or the request.");
create_exception!(workz_build, ValidationError, WorkzBuildError, "The app's sources are invalid or unsafe.");
create_exception!(workz_build, DependencyError, WorkzBuildError, "Dependencies could not be resolved or installed.");
create_exception!(workz_build, ToolchainError, WorkzBuildError, "A build tool is missing or failed.");
create_exception!(workz_build, BuildFailedError, WorkzBuildError, "The build ran and produced nothing usable.");
create_exception!(workz_build, BuildTimeoutError, WorkzBuildError, "The build ran past its time limit.");
create_exception!(workz_build, BuildCancelledError, WorkzBuildError, "The build was cancelled.");
create_exception!(workz_build, StorageError, WorkzBuildError, "The cache or the artifact store failed.");
create_exception!(workz_build, InternalError, WorkzBuildError, "A bug in the engine (a panic included).");

/// The exception for an engine error, with its fields as attributes.
pub fn to_py_err(report: ErrorReport) -> PyErr {
    let err = match report.family {
        Family::Config => ConfigError::new_err(report.message.clone()),
        Family::Validation => ValidationError::new_err(report.message.clone()),
        Family::Dependency => DependencyError::new_err(report.message.clone()),
        Family::Toolchain => ToolchainError::new_err(report.message.clone()),
        Family::Build => BuildFailedError::new_err(report.message.clone()),
        Family::Timeout => BuildTimeoutError::new_err(report.message.clone()),
        Family::Cancelled => BuildCancelledError::new_err(report.message.clone()),
        Family::Storage => StorageError::new_err(report.message.clone()),
        Family::Internal => InternalError::new_err(report.message.clone()),
    };
    Python::attach(|py| {
        let value = err.value(py);
        let category = serde_json::to_value(report.category).ok().and_then(|v| v.as_str().map(String::from));
        let _ = value.setattr("code", &report.code);
        let _ = value.setattr("family", report.family.as_str());
        let _ = value.setattr("category", category);
        let _ = value.setattr("message", &report.message);
        let _ = value.setattr("hint", &report.hint);
        let _ = value.setattr("result", py.None());
    });
    err
}

/// Register the exception classes in the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("WorkzBuildError", py.get_type::<WorkzBuildError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ValidationError", py.get_type::<ValidationError>())?;
    m.add("DependencyError", py.get_type::<DependencyError>())?;
    m.add("ToolchainError", py.get_type::<ToolchainError>())?;
    m.add("BuildFailedError", py.get_type::<BuildFailedError>())?;
    m.add("BuildTimeoutError", py.get_type::<BuildTimeoutError>())?;
    m.add("BuildCancelledError", py.get_type::<BuildCancelledError>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    Ok(())
}
