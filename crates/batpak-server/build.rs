//! Compiles the KurrentDB client protocol's `.proto` files (ours, in `proto/`) with
//! protox, a protobuf compiler in Rust, so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/streams.proto",
        "proto/serverfeatures.proto",
        "proto/persistent.proto",
    ];
    for file in files
        .iter()
        .chain(&["proto/shared.proto", "proto/status.proto"])
    {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    // The harness that runs the kurrentdb crate's own streams tests includes them
    // from that crate's published source.
    match kurrentdb_tests() {
        Some(dir) => {
            println!("cargo:rustc-env=KURRENTDB_TESTS={}", dir.display());
            println!(
                "cargo:rerun-if-changed={}",
                dir.join("api/streams.rs").display()
            );
        }
        // Not unpacked yet (a build without dev-dependencies came first): a path that
        // does not exist makes cargo run this again next time, until it is there.
        None => println!("cargo:rerun-if-changed=kurrentdb-1.2.0-sources-not-unpacked-yet"),
    }
    tonic_build::configure()
        // Clients too, for the crate's own tests of bad input (a real gRPC client on
        // a loopback port); without transport helpers, so no client stack in builds.
        .build_client(true)
        .build_transport(false)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}

/// The `tests` directory of the kurrentdb crate (the dev-dependency, pinned) in
/// cargo's registry sources.
fn kurrentdb_tests() -> Option<std::path::PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")))?;
    let sources = std::fs::read_dir(home.join("registry").join("src")).ok()?;
    sources
        .filter_map(Result::ok)
        .map(|index| index.path().join("kurrentdb-1.2.0").join("tests"))
        .find(|tests| tests.join("api").join("streams.rs").is_file())
}
