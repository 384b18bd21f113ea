//! Configuration: TOML (figment) plus `KNOCK_NFQ_` environment overrides, validated into
//! [`model`] types.

pub mod model;

pub use model::*;
