//! Keel's host agent.
#![forbid(unsafe_code)]
