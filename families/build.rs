//! Embeds every `<family>.toml` of this folder: adding a family is adding a file.

use std::fmt::Write;

fn main() {
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".toml") && f != "Cargo.toml")
        .collect();
    files.sort();
    let mut out = String::from("&[\n");
    for f in &files {
        writeln!(
            out,
            "    ({f:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{f}\"))),"
        )
        .unwrap();
    }
    out += "]\n";
    let dest = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("templates.rs");
    std::fs::write(dest, out).unwrap();
}
