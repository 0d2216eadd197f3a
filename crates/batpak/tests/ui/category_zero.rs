use batpak::EventPayload;

#[derive(EventPayload)]
#[batpak(category = 0, type_id = 1)]
struct Internal {
    x: u32,
}

fn main() {}
