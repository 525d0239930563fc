//! enclave-builder: not built yet; see the enclave-builder issue.
fn main() {
    eprintln!("enclave-builder is not built yet: it lands with the enclave-builder issue");
    std::process::exit(2);
}
