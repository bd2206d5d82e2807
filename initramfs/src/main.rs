fn main() {
    eprintln!("kmodinit-mkimage: not yet");
}
