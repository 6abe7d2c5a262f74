// protox compiles the .proto files in Rust, so building husk never needs protoc.
fn main() {
    let files = [
        "containerd/bootstrap.proto",
        "containerd/runtime_info.proto",
        "containerd/runc_options.proto",
        "containerd/runtime_options.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."]).expect("compile husk's .proto files");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("generate Rust for husk's .proto files");
}
