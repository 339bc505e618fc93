fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc keeps the build independent of what the machine has installed.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    tonic_build::configure().compile_protos(&["proto/mom.proto"], &["proto"])?;
    Ok(())
}
