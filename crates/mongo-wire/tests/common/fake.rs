//! The scriptable fake server lives in the crate (`mongo_wire::testing`, feature `testing`) so
//! that the project's end-to-end tests can use it too.

#![allow(unused_imports)]

pub use mongo_wire::testing::*;
