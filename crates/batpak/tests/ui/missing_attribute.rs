use batpak::EventPayload;

#[derive(EventPayload)]
struct Unbound {
    x: u32,
}

fn main() {}
