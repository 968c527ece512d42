#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasm_visits_fuzz::manifest(data));
