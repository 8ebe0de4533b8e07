//! A `dynamic-backends` build links llama.cpp's shared libraries: the
//! binary looks for them in its own directory (rpath `$ORIGIN`), where cargo
//! puts them and where an install copies them.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dynamic = std::env::var_os("CARGO_FEATURE_DYNAMIC_BACKENDS").is_some();
    let unix = std::env::var("CARGO_CFG_TARGET_FAMILY").is_ok_and(|f| f == "unix");
    let apple = std::env::var("CARGO_CFG_TARGET_VENDOR").is_ok_and(|v| v == "apple");
    if dynamic && unix {
        let origin = if apple { "@executable_path" } else { "$ORIGIN" };
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{origin}");
    }
}
