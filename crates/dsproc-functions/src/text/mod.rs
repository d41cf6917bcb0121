//! Text functions.
pub mod normalize_text;
