use batpak::EventPayload;

#[derive(EventPayload)]
#[batpak(category = 2, type_id = 3, kind = 4)]
struct Odd {
    x: u32,
}

fn main() {}
