//! The error type of the library crates.

use std::fmt;

/// A boxed error carried as the [`source`](std::error::Error::source) of a [`DsprocError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors raised by dsproc's library crates. The CLI maps [`DsprocError::exit_code`]
/// onto the process exit status (2 for spec/usage errors, 1 for job failures).
///
/// `Usage` and `Job` may carry the error that caused them as their source; the message
/// then says what was being done (file, line, key, operation) and leaves the cause's
/// text to the source, so the CLI's `{err:#}` prints `message: cause: ...` once.
#[derive(Debug, thiserror::Error)]
pub enum DsprocError {
    /// The job spec is invalid. `location` is `file:line:col` when known.
    #[error("{location}: {message}")]
    Spec { location: SpecLocation, message: String },
    /// Bad usage that is not tied to a spec position (a missing input, an existing output).
    #[error("{message}")]
    Usage {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A data or I/O problem while the job ran; names the file and line when known.
    #[error("{message}")]
    Job {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The data was rejected by an `error` check: the version is recorded as
    /// rejected and the previous one stays current (exit 3: do not retry).
    #[error("{message}")]
    Rejected { message: String },
}

impl DsprocError {
    pub fn spec(location: SpecLocation, message: impl Into<String>) -> Self {
        Self::Spec { location, message: message.into() }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage { message: message.into(), source: None }
    }
    pub fn job(message: impl Into<String>) -> Self {
        Self::Job { message: message.into(), source: None }
    }
    /// A usage error caused by `source`; `message` should not repeat the source's text.
    pub fn usage_source(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Usage { message: message.into(), source: Some(source.into()) }
    }
    /// A job failure caused by `source`; `message` should not repeat the source's text.
    pub fn job_source(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Job { message: message.into(), source: Some(source.into()) }
    }
    /// Process exit code: 2 for spec and usage errors, 1 for failed jobs, 3 for
    /// data rejected by checks.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Spec { .. } | Self::Usage { .. } => 2,
            Self::Job { .. } => 1,
            Self::Rejected { .. } => 3,
        }
    }
}

/// Displays an error and its sources the way the CLI prints them (`anyhow`'s `{:#}`):
/// `error: source: source's source`, except that a source whose text already ends the
/// line is skipped (wrappers such as Arrow's `External error: {e}` that also return
/// `e` as their source). For the places where a typed error has to become text (a
/// DataFusion or Ballista message) without losing its causes.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut next = self.0.source();
        while let Some(e) = next {
            let text = e.to_string();
            if !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            next = e.source();
        }
        f.write_str(&line)
    }
}

/// A typed error handed to a boundary that keeps only `Display` (DataFusion's
/// `External`, Ballista's task status): displays the whole [`Chain`] and ends the
/// chain there, so nothing prints a cause twice. [`Flattened::get_ref`] gives the
/// typed error back to code that downcasts to this type.
#[derive(Debug)]
pub struct Flattened(BoxError);

impl Flattened {
    pub fn new(e: impl Into<BoxError>) -> Self {
        Self(e.into())
    }
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

impl fmt::Display for Flattened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Chain(self.0.as_ref()).fmt(f)
    }
}

impl std::error::Error for Flattened {}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn source_is_kept_out_of_the_message() {
        let cause = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = DsprocError::job_source("cannot read a.jsonl", cause);
        assert_eq!(e.to_string(), "cannot read a.jsonl");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("no such file"));
        assert_eq!(e.exit_code(), 1);
        assert_eq!(Chain(&e).to_string(), "cannot read a.jsonl: no such file");
        let flat = Flattened::new(e);
        assert_eq!(flat.to_string(), "cannot read a.jsonl: no such file");
        assert!(flat.source().is_none());
        // A wrapper that repeats its source's text prints it once.
        let inner = std::io::Error::other("disk full");
        let wrapped = std::io::Error::other(DsprocError::job_source("External error: disk full", inner));
        assert_eq!(Chain(&wrapped).to_string(), "External error: disk full");
        assert_eq!(
            DsprocError::usage_source("--memory-limit", crate::size::parse_size("x").unwrap_err()).exit_code(),
            2
        );
    }
}
