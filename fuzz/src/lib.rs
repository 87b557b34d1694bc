//! Shared pieces of attrib's fuzz and property tests (a dev-dependency only): the runner that
//! prints how many cases ran and counts panics anywhere in the process, text and damaged-byte
//! strategies, and the real IOI prompt files as sources of valid prompt-file text.

pub mod bytes;
pub mod prompts;
pub mod runner;
pub mod text;
