//! The error type of the library crates.

use std::fmt;

/// Errors raised by dsproc's library crates. The CLI maps [`DsprocError::exit_code`]
/// onto the process exit status (2 for spec/usage errors, 1 for job failures).
#[derive(Debug, thiserror::Error)]
pub enum DsprocError {
    /// The job spec is invalid. `location` is `file:line:col` when known.
    #[error("{location}: {message}")]
    Spec { location: SpecLocation, message: String },
    /// Bad usage that is not tied to a spec position (a missing input, an existing output).
    #[error("{0}")]
    Usage(String),
    /// A data or I/O problem while the job ran; names the file and line when known.
    #[error("{0}")]
    Job(String),
}

impl DsprocError {
    pub fn spec(location: SpecLocation, message: impl Into<String>) -> Self {
        Self::Spec { location, message: message.into() }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }
    pub fn job(message: impl Into<String>) -> Self {
        Self::Job(message.into())
    }
    /// Process exit code: 2 for spec and usage errors, 1 for failed jobs.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Spec { .. } | Self::Usage(_) => 2,
            Self::Job(_) => 1,
        }
    }
}

/// A position in a spec file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecLocation {
    pub file: String,
    pub line: Option<usize>,
    pub col: Option<usize>,
}

impl fmt::Display for SpecLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.col {
                write!(f, ":{col}")?;
            }
        }
        Ok(())
    }
}

pub type Result<T, E = DsprocError> = std::result::Result<T, E>;
