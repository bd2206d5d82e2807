//! The loader's side of the kernel's module requests: serving one through
//! the open world, and the reason its modules carry in the report.
//! The loading itself is the open world's ([`crate::loader::open_world`]): each
//! module inserted once across the boot's load, coldplug and every request.

pub use crate::wire::helper::Outcome;

/// The report's reason for a request's modules: `kernel request:NAME`.
pub fn chain_name(request: &str) -> String {
    format!("kernel request:{request}")
}

/// Serves `name` through `world`: not found if the index does not know
/// it, else loaded or failed with the open world's problems.
pub fn serve(world: &crate::loader::open_world::OpenWorld, name: &str) -> Outcome {
    if world.index().resolve(name).is_empty() {
        return Outcome::NotFound;
    }
    match world.request(&[name], &chain_name(name)) {
        Ok(()) => Outcome::Loaded,
        Err(problems) => Outcome::Failed(problems.join("; ")),
    }
}
