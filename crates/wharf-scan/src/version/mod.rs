//! Version ordering per package ecosystem.
