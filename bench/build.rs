//! Compiles the echo baseline's tiny proto without a system `protoc`, as `../build.rs` does for
//! the service's contract: `protox` parses it in pure Rust and `tonic-prost-build` generates the
//! client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/bench/echo/v1/echo.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
