/work/main/target/debug/deps/bit_vec-ef873014688c658e.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bit-vec-0.10.2/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bit-vec-0.10.2/src/util.rs

/work/main/target/debug/deps/libbit_vec-ef873014688c658e.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bit-vec-0.10.2/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bit-vec-0.10.2/src/util.rs

/work/main/target/debug/deps/libbit_vec-ef873014688c658e.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bit-vec-0.10.2/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bit-vec-0.10.2/src/util.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bit-vec-0.10.2/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bit-vec-0.10.2/src/util.rs:
