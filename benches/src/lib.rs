//! Benchmarks and load tools for Wharf. The criterion benches live in
//! `benches/`; the binaries in `src/bin/` measure whole-system figures.
