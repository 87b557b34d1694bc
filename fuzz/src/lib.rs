//! Shared pieces of attrib's tests (a dev-dependency only): the fuzz and property tests'
//! runner that prints how many cases ran and counts panics anywhere in the process, text and
//! damaged-byte strategies, the real IOI prompt files as sources of valid prompt-file text,
//! and `zip_eq`, the length-checked zip every golden comparison uses.

pub mod bytes;
pub mod checks;
pub mod prompts;
pub mod runner;
pub mod text;

pub use checks::zip_eq;
