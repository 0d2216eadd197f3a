use batpak::EventPayload;

#[derive(EventPayload)]
#[batpak(category = 2)]
struct Half {
    x: u32,
}

fn main() {}
