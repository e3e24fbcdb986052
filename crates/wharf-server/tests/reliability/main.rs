//! The reliability suite: the real `wharf` binary under crashes, storage
//! faults, network abuse, concurrency and load. Each case is bounded in
//! time and size and stops by itself; the long ones are ignored by default and
//! run by `.ci/run`. `docs/reliability.md` says what each case proves.

#[path = "../common/mod.rs"]
mod common;

mod client;
mod concurrency;
mod crash;
mod load;
mod network;
mod storage;
