use batpak::EventPayload;

#[derive(EventPayload)]
#[batpak(category = 1, type_id = 4096)]
struct Big {
    x: u32,
}

fn main() {}
