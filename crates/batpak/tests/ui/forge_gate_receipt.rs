// A gate receipt can only come from a passed evaluation.
fn main() {
    let _forged = batpak::gate::GateReceipt { gates: vec!["overdraft".to_string()] };
}
