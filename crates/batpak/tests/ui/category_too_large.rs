use batpak::EventPayload;

#[derive(EventPayload)]
#[batpak(category = 16, type_id = 1)]
struct Big {
    x: u32,
}

fn main() {}
