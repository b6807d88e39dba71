//! The ground floor: plain data with no I/O and no dependency on any other module of Weir.
//!
//! | module | what |
//! |---|---|
//! | [`record`] | typed values, keys, records with their position |
//! | [`reject`] | dead letters with a typed reason, late records |
//! | [`row`] | table rows, totally ordered (for the join's arrangement) |
//! | [`window`] | final window results |
//! | [`hash`] | stable hashes for routing and partition assignment |
//! | [`timestamp`] | RFC 3339 text and UTC days |
//! | [`user`] | raw randomuser.me users -> the tutorial's formatted users (generator and `weir produce`) |

pub mod hash;
pub mod record;
pub mod reject;
pub mod row;
pub mod timestamp;
pub mod user;
pub mod window;
