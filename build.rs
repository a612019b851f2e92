//! Compiles the protobuf contract without a system `protoc`: `protox` parses the files in pure
//! Rust, `tonic-prost-build` generates the code, and the file descriptor set is kept for gRPC
//! reflection.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/suppression/v1/suppression.proto",
        "proto/suppression/v1/bounce_message.proto",
    ];
    println!("cargo:rerun-if-changed=proto");

    let fds = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("suppression_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // An import stream answers with a verdict per contact, and nearly all are ALLOW verdicts
        // without a suppression or a suggestion: boxed, those two keep each verdict at ~150
        // bytes instead of ~330 (moved several times on the way to the wire).
        .boxed(".suppression.v1.ImportVerdict.suppression")
        .boxed(".suppression.v1.ImportVerdict.suggestion")
        .compile_fds(fds)?;
    Ok(())
}
