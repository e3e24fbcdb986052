//! The filesystem backend (feature `fs`).
