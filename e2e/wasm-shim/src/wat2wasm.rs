//! Converts the end-to-end suite's WebAssembly text modules to binary modules for its images.
//! Usage: wat2wasm IN.wat OUT.wasm

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: wat2wasm IN.wat OUT.wasm");
    };
    let binary =
        wat::parse_file(input).with_context(|| format!("{input} is not valid WebAssembly text"))?;
    std::fs::write(output, binary).with_context(|| format!("cannot write {output}"))?;
    Ok(())
}
