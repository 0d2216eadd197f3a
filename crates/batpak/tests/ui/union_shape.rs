use batpak::EventPayload;

#[derive(EventPayload)]
#[batpak(category = 2, type_id = 3)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
