//! Turns `IM_TEST_SKIP_SERVICES` into the `im_skip_services` cfg, which marks the tests that need
//! PostgreSQL, Redis, Node.js, nginx or PostgreSQL's server binaries as ignored. libtest can only
//! ignore a test at compile time, and an ignored test is counted in the run's summary, where a
//! test that returns early would count as passed.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=IM_TEST_SKIP_SERVICES");
    println!("cargo::rustc-check-cfg=cfg(im_skip_services)");
    let skip = std::env::var("IM_TEST_SKIP_SERVICES").unwrap_or_default();
    if !matches!(
        skip.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "false" | "no"
    ) {
        println!("cargo::rustc-cfg=im_skip_services");
    }
}
