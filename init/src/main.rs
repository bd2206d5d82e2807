fn main() {
    eprintln!("kmodinit: not yet");
}
