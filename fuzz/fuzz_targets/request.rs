#![no_main]
libfuzzer_sys::fuzz_target!(|case: wasm_visits_fuzz::RequestCase| wasm_visits_fuzz::request(&case));
