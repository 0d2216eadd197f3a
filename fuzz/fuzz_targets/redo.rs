#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    batpak::__fuzz::redo(data);
});
