//! The Decider shape every aggregate follows.

use crate::event::Event;
use crate::rejection::Rejection;

/// `decide` is pure: time, ids and the caller arrive inside the command, and
/// every fact it needs is in the state. A command that would change nothing
/// returns no events. `evolve` never fails and ignores events of other kinds,
/// so a state can be folded from several streams' events.
pub trait Decider {
    type Command;
    type State: Clone;

    fn initial_state() -> Self::State;

    /// # Errors
    /// A [`Rejection`] when a rule refuses the command.
    fn decide(command: &Self::Command, state: &Self::State) -> Result<Vec<Event>, Rejection>;

    fn evolve(state: Self::State, event: &Event) -> Self::State;

    /// The state after `events`, from the initial state.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self::State {
        events.into_iter().fold(Self::initial_state(), Self::evolve)
    }
}
