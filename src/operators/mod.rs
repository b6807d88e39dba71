//! Dataflow operators between the source and the sink.
//!
//! - [`window`]: event-time windows and their aggregates, frontier-gated.
//!
//! Parsing and lateness happen in the source operator ([`crate::source`]), because lateness is
//! decided per partition in partition order.

pub mod window;
