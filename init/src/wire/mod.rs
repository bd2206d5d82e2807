//! What crosses between `/init`'s processes, in one place: what PID 1
//! hands the loader child at the fork ([`fork`]), its go ([`go`]), the
//! loader's events up the pipe ([`events`]), and the module helper's
//! socket ([`helper`]). Both ends of each link import it; neither imports
//! the other.

pub mod events;
pub mod fork;
pub mod go;
pub mod helper;
