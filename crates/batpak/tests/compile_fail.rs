//! What must not compile: every invalid derive attribute (with a message naming the
//! rule, pointing at the attribute) and a forged gate receipt.

#[test]
fn invalid_programs_are_rejected_with_clear_messages() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
