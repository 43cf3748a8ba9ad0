//! The simulator's error type.

/// What can go wrong before the simulator serves anything.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration cannot be used.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// A fault set cannot be used.
    #[error("invalid faults: {0}")]
    Faults(String),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}
