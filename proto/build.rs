//! Generates the attrib.v1 gRPC code with a vendored protoc, so a plain `cargo build` needs
//! no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    println!("cargo:rerun-if-changed=attrib/v1/attrib.proto");
    // The encoded descriptors of attrib.v1, served by the coordinator's gRPC reflection
    // (`attrib_proto::FILE_DESCRIPTOR_SET`).
    let descriptors = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("attrib_v1.bin");
    // Unit results are the bulk of the traffic: decoded as `Bytes`, a view of the received
    // buffer, not a copy.
    tonic_prost_build::configure()
        .file_descriptor_set_path(descriptors)
        .bytes(".attrib.v1.UnitResult.values")
        .compile_protos(&["attrib/v1/attrib.proto"], &["."])?;
    Ok(())
}
