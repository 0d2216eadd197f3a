use batpak::EventPayload;

#[derive(EventPayload)]
#[batpak(category = 2, type_id = 3, type_id = 4)]
struct Twice {
    x: u32,
}

fn main() {}
