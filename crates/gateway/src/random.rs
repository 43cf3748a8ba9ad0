//! Randomness from the operating system's CSPRNG, for ids and secrets.

/// `N` bytes from the OS CSPRNG. Panics only if the OS has no entropy source,
/// in which case no secret could be made safely anyway.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut out).expect("the operating system's random source failed");
    out
}
