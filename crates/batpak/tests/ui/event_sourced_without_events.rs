use batpak::EventSourced;

#[derive(Clone, Default, EventSourced)]
#[batpak(name = "nothing")]
struct Empty {
    n: u32,
}

fn main() {}
