use batpak::EventPayload;

#[derive(EventPayload)]
#[batpak(category = 2, type_id = 3, version = 0)]
struct Unversioned {
    x: u32,
}

fn main() {}
