//! Compiles the gRPC protocol (proto/mom.proto) into Rust at build time.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc keeps the build independent of what the machine has installed.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    tonic_build::configure()
        // Maps (message headers) as BTreeMap: encoded in key order, so one record encodes
        // to the same bytes wherever it is encoded.
        .btree_map(["."])
        .compile_protos(&["proto/mom.proto"], &["proto"])?;
    Ok(())
}
