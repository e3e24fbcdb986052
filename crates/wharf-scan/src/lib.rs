//! Offline vulnerability scanning for Wharf: software bills of materials
//! extracted from image layers, and matching against OSV advisories with
//! each ecosystem's own version ordering.

pub mod version;
