//! The given/when/then harness for deciders (unit tests only).

use crate::decider::Decider;
use crate::event::Event;
use crate::rejection::Rejection;

pub(crate) struct Given<D: Decider> {
    state: D::State,
}

pub(crate) struct When<D: Decider> {
    result: Result<Vec<Event>, Rejection>,
    _decider: std::marker::PhantomData<D>,
}

/// The state after `events`.
pub(crate) fn given<D: Decider>(events: &[Event]) -> Given<D> {
    Given {
        state: D::fold(events),
    }
}

impl<D: Decider> Given<D> {
    pub(crate) fn when(self, command: &D::Command) -> When<D> {
        When {
            result: D::decide(command, &self.state),
            _decider: std::marker::PhantomData,
        }
    }
}

impl<D: Decider> When<D> {
    #[track_caller]
    pub(crate) fn then(self, expected: &[Event]) {
        match self.result {
            Ok(events) => assert_eq!(events, expected),
            Err(rejection) => panic!("expected events, got rejection {rejection:?}"),
        }
    }

    #[track_caller]
    pub(crate) fn rejects(self, expected: Rejection) {
        assert_eq!(self.result, Err(expected));
    }

    #[track_caller]
    pub(crate) fn rejects_code(self, code: &str) {
        match self.result {
            Err(rejection) => assert_eq!(rejection.code(), code, "{rejection}"),
            Ok(events) => panic!("expected rejection {code}, got events {events:?}"),
        }
    }
}
