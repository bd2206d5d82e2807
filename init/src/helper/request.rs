//! What a request comes to, and the reason its modules carry in the report.
//! The loading itself is the open world's ([`crate::open_world`]): each
//! module inserted once across the boot's load, coldplug and every request.

/// What became of a request (the helper's exit status follows modprobe's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded now, or already loaded or builtin: modprobe's 0.
    Loaded,
    /// Known to the image, but a module failed (the message says which).
    Failed(String),
    /// Neither a module nor an alias of one in the image.
    NotFound,
}

/// The report's reason for a request's modules: `kernel request:NAME`.
pub fn chain_name(request: &str) -> String {
    format!("kernel request:{request}")
}

/// Serves `name` through `world`: not found if the index does not know
/// it, else loaded or failed with the open world's problems.
pub fn serve(world: &crate::open_world::OpenWorld, name: &str) -> Outcome {
    if world.index().resolve(name).is_empty() {
        return Outcome::NotFound;
    }
    match world.request(&[name], &chain_name(name)) {
        Ok(()) => Outcome::Loaded,
        Err(problems) => Outcome::Failed(problems.join("; ")),
    }
}
