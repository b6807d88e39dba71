//! Dataflow operators between the source and the sink.
//!
//! - [`window`]: event-time windows and their aggregates, frontier-gated.
//! - [`flow`]: how far a source may run ahead of the windows and of the store.
//! - [`control`]: the cluster's control channel (stop requests, and safe points reached).
//! - [`asof`]: the as-of join of a stream with a table (an arrangement), frontier-gated.
//! - [`interval`]: the interval join of two streams, frontier-gated, state bounded by the interval.
//! - [`gate`]: what a join holds back until the frontiers pass it, under one capability.
//!
//! Parsing and lateness happen in the source operator ([`crate::source`]), because lateness is
//! decided per partition in partition order. Progress, the stage after the sink, is
//! [`crate::progress`].

pub mod asof;
pub mod control;
pub mod flow;
pub mod gate;
pub mod interval;
pub mod window;
