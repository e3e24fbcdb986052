//! Runs a command against a fresh three-node Garage cluster.
//!
//! ```text
//! cargo run -p wharf-storage-s3 --features testing --example with_garage -- \
//!     cargo test -p wharf-server --test oci_conformance
//! ```
//!
//! Starts the cluster (see `wharf_storage_s3::testing`), runs the command
//! with the S3 settings in its environment, then stops the cluster and
//! removes its data, and exits with the command's status. The environment:
//! `WHARF_STORAGE__KIND=s3` and `WHARF_STORAGE__S3_{ENDPOINT,REGION,BUCKET,
//! PREFIX,ACCESS_KEY_ID,SECRET_ACCESS_KEY}` (so every `wharf` the command
//! starts uses the cluster), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, and `WHARF_S3_ENDPOINTS` (every node's endpoint,
//! comma-separated).

use std::process::{Command, ExitCode};

use wharf_storage_s3::testing::{BUCKET, GarageCluster, REGION};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: with_garage COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    let cluster = match GarageCluster::start(3) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("with_garage: {e}");
            return ExitCode::FAILURE;
        }
    };
    let endpoints: Vec<String> = (0..cluster.len()).map(|i| cluster.endpoint(i)).collect();
    eprintln!("with_garage: cluster up at {}", endpoints.join(", "));
    let status = Command::new(program)
        .args(rest)
        .env("WHARF_STORAGE__KIND", "s3")
        .env("WHARF_STORAGE__S3_ENDPOINT", &endpoints[0])
        .env("WHARF_STORAGE__S3_REGION", REGION)
        .env("WHARF_STORAGE__S3_BUCKET", BUCKET)
        .env("WHARF_STORAGE__S3_PREFIX", "with-garage")
        .env("WHARF_STORAGE__S3_ACCESS_KEY_ID", cluster.key_id())
        .env("WHARF_STORAGE__S3_SECRET_ACCESS_KEY", cluster.secret())
        .env("AWS_ACCESS_KEY_ID", cluster.key_id())
        .env("AWS_SECRET_ACCESS_KEY", cluster.secret())
        .env("AWS_REGION", REGION)
        .env("WHARF_S3_ENDPOINTS", endpoints.join(","))
        .status();
    drop(cluster);
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("with_garage: {program} exited with {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("with_garage: cannot run {program}: {e}");
            ExitCode::FAILURE
        }
    }
}
