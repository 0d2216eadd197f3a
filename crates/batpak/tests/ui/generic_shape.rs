use batpak::EventPayload;

#[derive(EventPayload)]
#[batpak(category = 2, type_id = 3)]
struct Wrapper<T> {
    inner: T,
}

fn main() {}
