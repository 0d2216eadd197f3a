#![no_main]

// The input is a packed store directory (`batpak::__fuzz::pack_dir`). The directory
// lives on tmpfs when there is one: the store fsyncs, and a disk makes that slow.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    let Ok(dir) = dir else { return };
    batpak::__fuzz::open_dir(dir.path(), data);
});
