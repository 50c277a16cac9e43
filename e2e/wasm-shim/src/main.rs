//! containerd-shim-wasm-v1: runs a container's WebAssembly module (WASI preview 1) with wasmtime.
//!
//! The runwasi library does the containerd side (task API, youki container for namespaces and
//! cgroups, stdio, OCI Wasm layers); this file is the sandbox: it compiles the module, gives it
//! the container's arguments and environment and the process's stdio, and returns its exit code.
//! A container whose entrypoint is not Wasm (the pod's pause container) runs natively.

use anyhow::{Context, Result, bail};
use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::RuntimeContext;
use containerd_shim_wasm::shim::{Cli, Shim, Version, version};
use wasmtime::{Config, Engine, Linker, Module, Store};
use wasmtime_wasi::preview1::{self as p1, WasiP1Ctx};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

struct WasmShim;

#[derive(Default)]
struct WasiSandbox;

impl Shim for WasmShim {
    type Sandbox = WasiSandbox;

    fn name() -> &'static str {
        "wasm"
    }

    fn version() -> Version {
        version!()
    }
}

/// Splits `NAME=value` entries; an entry without `=` is a name with an empty value.
fn env_pairs(envs: &[String]) -> Vec<(String, String)> {
    envs.iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => (entry.clone(), String::new()),
        })
        .collect()
}

impl Sandbox for WasiSandbox {
    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> Result<i32> {
        let entrypoint = ctx.entrypoint();
        let bytes = entrypoint.source.as_bytes().context("reading the module")?;
        if entrypoint.source.is_precompiled()? {
            bail!("precompiled modules are not supported by this shim");
        }
        let mut config = Config::new();
        config.async_support(true);
        let engine = Engine::new(&config)?;
        let module = Module::new(&engine, &bytes).context("compiling the module")?;

        let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
        p1::add_to_linker_async(&mut linker, |ctx| ctx)?;
        let wasi = WasiCtxBuilder::new()
            .args(ctx.args())
            .envs(&env_pairs(ctx.envs()))
            .inherit_stdio()
            .build_p1();
        let mut store = Store::new(&engine, wasi);
        let instance = linker
            .instantiate_async(&mut store, &module)
            .await
            .context("instantiating the module")?;
        let func = instance
            .get_typed_func::<(), ()>(&mut store, &entrypoint.func)
            .with_context(|| format!("the module exports no function {:?}", entrypoint.func))?;
        match func.call_async(&mut store, ()).await {
            Ok(()) => Ok(0),
            Err(err) => match err.downcast_ref::<I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(err.context("running the module")),
            },
        }
    }
}

fn main() {
    WasmShim::run(None);
}
